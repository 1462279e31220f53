"""The six asset checks on cold_copies, partition-aware and blocking, all at ERROR severity, computed by one
step from one audit.

Each names its day(s) and the first failing keys. Being blocking, a failure stops hot_deletions in the
same run: nothing is deleted from the hot site for a day whose checks failed.

One `@multi_asset_check` (one op, one step) evaluates the six checks from a single audit of the day range:
the audit is computed once per run by Dagster's own step, not shared through process memory, so it holds
under any executor (in-process, multiprocess, one container per step) and any run launcher. What the run's
copy step saw of its own copies reaches this step through the tracking database (replication/evidence.py).
"""

import datetime as dt
import time
from collections.abc import Iterator

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    MetadataValue,
    multi_asset_check,
)

from vault_pipeline.alerting.payload import key_hash
from vault_pipeline.assets.replication import cold_copies
from vault_pipeline.partitions import daily_partitions, day_range
from vault_pipeline.replication.audit import Auditor, DayAudit
from vault_pipeline.replication.evidence import run_evidence
from vault_pipeline.replication.report import md_escape
from vault_pipeline.replication.shards import SHARD_TAG, Shard, ShardError
from vault_pipeline.resources import (
    ColdSiteResource,
    ReplicationSettingsResource,
    S3SiteResource,
    TrackingDatabaseResource,
    VerificationSettingsResource,
)

FIRST_KEYS = 20
# Failing objects identified beyond the shown keys, by a 16-hex-digit hash each (~19 KB of metadata at most):
# the alert sensor tells new damage from old by them even when `failing_keys` is cut at FIRST_KEYS.
HASHED_KEYS = 1000
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
        check_name=aspect,
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
            # key_hash of every failing object (the first HASHED_KEYS by key), for the alerts (README, Alerts)
            "failing_key_hashes": MetadataValue.json(
                [key_hash(k) for k in sorted({o.key for o in failing})[:HASHED_KEYS]]),
            "failures": MetadataValue.md("\n".join(table) if failing else "None."),
        },
    )


def day_audit(
    context: AssetCheckExecutionContext | AssetExecutionContext,
    hot_site: S3SiteResource,
    cold_site: ColdSiteResource,
    tracking_db: TrackingDatabaseResource,
    replication: ReplicationSettingsResource,
    verification: VerificationSettingsResource,
) -> DayAudit:
    """The fixity audit of the run's day range. The versions this run's copy step verified are judged from
    that verification (read back from the database); everything else is asked of the cold site."""
    first_day, last_day = day_range(context.partition_key_range)
    store = tracking_db.store()
    auditor = Auditor(
        store=store, cold=cold_site.client(), cold_bucket=cold_site.bucket,
        hot=hot_site.client(), hot_bucket=hot_site.bucket, policy=replication.retention_policy(),
        storage_class=cold_site.storage_class,
        reserved_prefixes=(verification.report_prefix, *replication.reserved_prefixes),
        concurrency=verification.audit_concurrency,
        grace=dt.timedelta(minutes=verification.completeness_grace_minutes),
        fresh=run_evidence(store, context.run.run_id, hot_site.bucket),
    )
    # A malformed tag already failed the run's copy step; here it audits the whole range rather than nothing.
    try:
        shard = Shard.from_tags(context.run.tags)
    except ShardError:
        shard = None
    return auditor.audit(first_day, last_day, shard=shard)


CHECK_SPECS = [
    AssetCheckSpec(aspect, asset=cold_copies, description=description, blocking=True,
                   partitions_def=daily_partitions)
    for aspect, description in CHECKS.items()
]


@multi_asset_check(
    specs=CHECK_SPECS,
    name="cold_copies_audit",
    description="One fixity audit of the day (manifest, cold site, hot site), judged six ways.",
    can_subset=True,  # one check alone costs the same audit; only the selected ones are reported
)
def cold_copies_audit(
    context: AssetCheckExecutionContext,
    hot_site: S3SiteResource,
    cold_site: ColdSiteResource,
    tracking_db: TrackingDatabaseResource,
    replication: ReplicationSettingsResource,
    verification: VerificationSettingsResource,
) -> Iterator[AssetCheckResult]:
    started = time.monotonic()
    audit = day_audit(context, hot_site, cold_site, tracking_db, replication, verification)
    keys = context.partition_key_range
    scope = keys.start if keys.start == keys.end else f"{keys.start}..{keys.end}"
    if shard_tag := context.run.tags.get(SHARD_TAG):
        scope += f" (shard {shard_tag}: its slice of the day)"
    context.log.info(f"audit of {scope}: {len(audit.objects)} object(s), {audit.judged_from_verification} judged "
                     f"from this run's verification, {time.monotonic() - started:.2f} s")
    selected = {key.name for key in context.selected_asset_check_keys}
    for aspect in CHECKS:
        if aspect in selected:
            yield check_result(audit, aspect, scope)


cold_copies_checks: list[AssetChecksDefinition] = [cold_copies_audit]
