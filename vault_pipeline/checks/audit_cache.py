"""One fixity audit per run and day range, shared by the six checks and the report.

Definitions use the in-process executor, so every step of a run runs in one process and the first
step that needs the audit computes it; the others reuse it instead of repeating every HEAD.
"""

import datetime as dt
import threading

from dagster import AssetCheckExecutionContext, AssetExecutionContext

from vault_pipeline.partitions import day_range
from vault_pipeline.replication.audit import Auditor, DayAudit
from vault_pipeline.replication.evidence import recorded_evidence
from vault_pipeline.resources import (
    ColdSiteResource,
    ReplicationSettingsResource,
    S3SiteResource,
    TrackingDatabaseResource,
    VerificationSettingsResource,
)

_audits: dict[tuple[str, str, str], DayAudit] = {}
_lock = threading.Lock()
_MAX_CACHED = 64


def day_audit(
    context: AssetCheckExecutionContext | AssetExecutionContext,
    hot_site: S3SiteResource,
    cold_site: ColdSiteResource,
    tracking_db: TrackingDatabaseResource,
    replication: ReplicationSettingsResource,
    verification: VerificationSettingsResource,
) -> DayAudit:
    keys = context.partition_key_range
    cache_key = (context.run.run_id, keys.start, keys.end)
    with _lock:  # also serialises concurrent first computations of the same audit
        audit = _audits.get(cache_key)
        if audit is None:
            first_day, last_day = day_range(keys)
            auditor = Auditor(
                store=tracking_db.store(), cold=cold_site.client(), cold_bucket=cold_site.bucket,
                hot=hot_site.client(), hot_bucket=hot_site.bucket, policy=replication.retention_policy(),
                storage_class=cold_site.storage_class,
                reserved_prefixes=(verification.report_prefix, *replication.reserved_prefixes),
                concurrency=verification.audit_concurrency,
                grace=dt.timedelta(minutes=verification.completeness_grace_minutes),
                fresh=recorded_evidence(context.run.run_id),
            )
            audit = auditor.audit(first_day, last_day)
            if len(_audits) >= _MAX_CACHED:
                _audits.pop(next(iter(_audits)))
            _audits[cache_key] = audit
        return audit
