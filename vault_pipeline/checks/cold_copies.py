"""Asset checks on cold_copies, partition-aware and blocking, all at ERROR severity.

Each names its day(s) and the first failing keys. Being blocking, a failure stops hot_deletions in the
same run: nothing is deleted from the hot site for a day whose checks failed.
"""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from vault_pipeline.assets.replication import cold_copies
from vault_pipeline.checks.audit_cache import day_audit
from vault_pipeline.partitions import daily_partitions
from vault_pipeline.replication.audit import DayAudit
from vault_pipeline.replication.report import md_escape
from vault_pipeline.resources import (
    ColdSiteResource,
    ReplicationSettingsResource,
    S3SiteResource,
    TrackingDatabaseResource,
    VerificationSettingsResource,
)

FIRST_KEYS = 20
CHECKS: dict[str, str] = {
    "completeness": "Every hot object of the day has a verified cold copy, and it is the current version.",
    "checksum": "The cold checksum and the SHA-256 in the cold metadata equal the values recorded at copy time.",
    "retention": "The current version is locked in COMPLIANCE mode at least until the policy's date.",
    "storage_class": "Every cold copy is in the configured storage class.",
    "tags": "DocumentType and RetentionYears are present and match the manifest.",
    "orphans": "Every cold object of the day is known to the manifest.",
}


def check_result(audit: DayAudit, aspect: str, scope: str) -> AssetCheckResult:
    failing = audit.failing(aspect)
    days = sorted({o.day.isoformat() for o in failing}) or [audit.first_day.isoformat()]
    table = ["| day | key | problem |", "|---|---|---|"] + [
        f"| {o.day} | `{md_escape(o.key)}` | {md_escape(o.problems[aspect])} |"
        for o in failing[:FIRST_KEYS]
    ]
    description = (f"{aspect}: {len(failing)} of {len(audit.objects)} object(s) fail on {', '.join(days[:5])}"
                   if failing else f"{aspect}: all {len(audit.objects)} object(s) pass for {scope}")
    return AssetCheckResult(
        passed=not failing,
        severity=AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            "days": MetadataValue.json(days if failing else []),
            "objects_checked": MetadataValue.int(len(audit.objects)),
            # Versions this run copied were judged from the HEAD that verified them seconds before.
            "judged_from_this_runs_verification": MetadataValue.int(audit.judged_from_verification),
            "objects_failing": MetadataValue.int(len(failing)),
            "failing_keys": MetadataValue.json([o.key for o in failing[:FIRST_KEYS]]),
            "failures": MetadataValue.md("\n".join(table) if failing else "None."),
        },
    )


def _build(aspect: str) -> AssetChecksDefinition:
    @asset_check(
        asset=cold_copies,
        name=aspect,
        description=CHECKS[aspect],
        blocking=True,
        partitions_def=daily_partitions,
    )
    def _check(
        context: AssetCheckExecutionContext,
        hot_site: S3SiteResource,
        cold_site: ColdSiteResource,
        tracking_db: TrackingDatabaseResource,
        replication: ReplicationSettingsResource,
        verification: VerificationSettingsResource,
    ) -> AssetCheckResult:
        audit = day_audit(context, hot_site, cold_site, tracking_db, replication, verification)
        keys = context.partition_key_range
        return check_result(audit, aspect, keys.start if keys.start == keys.end else f"{keys.start}..{keys.end}")

    return _check


cold_copies_checks: list[AssetChecksDefinition] = [_build(aspect) for aspect in CHECKS]
