"""verification_report[day]: the fixity audit of the day, three views compared (manifest, hot, cold).

Kept three ways: a locked CSV on the cold site (STANDARD class, readable without a restore), numeric
materialization metadata the UI plots over time, and a PNG chart in the materialization.
"""

import datetime as dt

from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from vault_pipeline.assets.journaling import flush_journal
from vault_pipeline.assets.replication import cold_copies
from vault_pipeline.checks.cold_copies import day_audit
from vault_pipeline.journal.entries import report_fields
from vault_pipeline.partitions import daily_partitions
from vault_pipeline.replication.audit import CLASSES
from vault_pipeline.replication.report import (
    Prices,
    audit_frame,
    chart_png,
    lag_percentiles,
    minimum_lock_count,
    minimum_lock_table,
    monthly_cost,
    png_markdown,
    problems_table,
    summary_table,
    write_report,
)
from vault_pipeline.resources import (
    ColdSiteResource,
    ReplicationSettingsResource,
    S3SiteResource,
    TrackingDatabaseResource,
    VerificationSettingsResource,
)
from vault_pipeline.resources.journal import JournalResource


@asset(
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[cold_copies],
    group_name="verification",
    kinds={"s3", "pandas", "postgres"},
    description="Daily fixity audit: every object classified ok / missing_in_cold / checksum_mismatch / "
    "retention_short / wrong_class / wrong_tags / orphan_in_cold / hot_changed, with lag, cost and coverage.",
)
def verification_report(
    context: AssetExecutionContext,
    hot_site: S3SiteResource,
    cold_site: ColdSiteResource,
    tracking_db: TrackingDatabaseResource,
    replication: ReplicationSettingsResource,
    verification: VerificationSettingsResource,
    journal: JournalResource,
) -> MaterializeResult:
    audit = day_audit(context, hot_site, cold_site, tracking_db, replication, verification)
    frame = audit_frame(audit)
    store = tracking_db.store()
    counts = audit.counts()
    keys = context.partition_key_range
    label = keys.start if keys.start == keys.end else f"{keys.start}..{keys.end}"
    now = dt.datetime.now(dt.UTC)
    report_key = f"{verification.report_prefix}{label}/verification-{now:%Y%m%dT%H%M%SZ}-{context.run.run_id[:8]}.csv"
    written = write_report(cold_site.client(), cold_site.bucket, report_key, frame,
                           retention_years=verification.report_retention_years, now=now)
    store.journal(report_fields(
        bucket=cold_site.bucket, key=written["key"], version_id=written["version_id"], sha256=written["sha256"],
        size=int(written["size"]), retain_until=dt.datetime.fromisoformat(written["retain_until"]),
        day=dt.date.fromisoformat(keys.start), run_id=context.run.run_id))
    for day in sorted({o.day for o in audit.objects} or {audit.first_day}):
        day_objects = [o for o in audit.objects if o.day == day]
        store.record_verification(
            day=day if day != dt.date.min else dt.date.fromisoformat(keys.start), run_id=context.run.run_id,
            objects=len(day_objects), ok=sum(o.classification == "ok" for o in day_objects),
            counts={c: sum(o.classification == c for o in day_objects) for c in CLASSES},
            report_key=written["key"], report_version_id=written["version_id"],
        )
    lag = lag_percentiles(frame)
    prices = Prices(verification.price_archive_gb_month, verification.price_standard_gb_month)
    replicated = frame[frame["status"] == "replicated"]
    day_cost = monthly_cost(len(replicated), int(replicated["ovh_size"].sum()), prices)
    all_objects, all_bytes = store.cold_totals(hot_site.bucket)
    coverage = coverage_statement(store.days_by_last_verification(hot_site.bucket), verification.period_days, now)
    metadata = {f"count_{c}": MetadataValue.int(n) for c, n in counts.items()}
    metadata.update({
        "objects": MetadataValue.int(len(frame)),
        "problems": MetadataValue.int(len(frame) - counts["ok"]),
        # Documents whose policy date was past when copied, locked until copy + VAULT_MINIMUM_LOCK_DAYS.
        "minimum_lock": MetadataValue.int(minimum_lock_count(frame)),
        "minimum_lock_documents": MetadataValue.md(minimum_lock_table(frame)),
        "lag_p50_s": MetadataValue.float(round(lag["p50"], 3)) if lag["p50"] is not None else MetadataValue.null(),
        "lag_p99_s": MetadataValue.float(round(lag["p99"], 3)) if lag["p99"] is not None else MetadataValue.null(),
        "estimated_monthly_cost_usd_day": MetadataValue.float(round(day_cost, 6)),
        "estimated_monthly_cost_usd_vault": MetadataValue.float(
            round(monthly_cost(all_objects, all_bytes, prices), 6)),
        "coverage": MetadataValue.text(coverage),
        "report_key": MetadataValue.text(written["key"]),
        "report_version_id": MetadataValue.text(written["version_id"]),
        "report_sha256": MetadataValue.text(written["sha256"]),
        "summary": MetadataValue.md(summary_table(frame)),
        "problem_objects": MetadataValue.md(problems_table(frame)),
        "chart": MetadataValue.md(png_markdown(chart_png(frame, f"verification {label}"))),
    })
    metadata.update(flush_journal(context, journal, cold_site, tracking_db))
    context.log.info(f"verification {label}: {len(frame)} objects, {len(frame) - counts['ok']} with problems; "
                     f"report {written['key']}")
    return MaterializeResult(metadata=metadata)


def coverage_statement(days: list[tuple[dt.date, dt.datetime | None]], period_days: int, now: dt.datetime) -> str:
    horizon = now - dt.timedelta(days=period_days)
    covered = sum(1 for _, last in days if last is not None and last >= horizon)
    oldest = next((d for d, last in days if last is None or last < horizon), None)
    text = f"{covered} of {len(days)} day(s) with documents verified within the last {period_days} days"
    return text + (f"; next due: {oldest}" if oldest else "")
