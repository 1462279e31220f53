"""hot_bucket_sweep: the reconciliation sweep of the hot bucket, as an asset the schedule materializes.

Thin layer over vault_pipeline.intake.sweep: resources in, metadata out. The sweep registers what it lists;
hot_bucket_sensor's next tick requests the runs (it asks the database which days have pending rows).
"""

import time

from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, MetadataValue, asset
from pydantic import Field

from vault_pipeline.intake.sweep import SweepBusy, SweepReport, run_sweep
from vault_pipeline.replication.report import md_escape
from vault_pipeline.resources import ColdSiteResource, S3SiteResource, TrackingDatabaseResource
from vault_pipeline.resources.intake_settings import IntakeSettingsResource


class SweepConfig(Config):
    listers: int | None = Field(
        default=None, ge=1, le=64,
        description="Parallel listers for this run (default VAULT_SWEEP_LISTERS).")
    max_minutes: float | None = Field(
        default=None, gt=0,
        description="Stop listing after this long; the sweep stays open and the next run resumes it.")


def ranges_table(report: SweepReport, limit: int = 40) -> str:
    lines = ["| range | from (exclusive) | to (inclusive) | objects | pages | new | changed | seconds | done |",
             "|---:|---|---|---:|---:|---:|---:|---:|---|"]
    for r in report.ranges[:limit]:
        start = f"`{md_escape(r.start_after)}`" if r.start_after is not None else "(first key)"
        end = f"`{md_escape(r.end_key)}`" if r.end_key is not None else "(last key)"
        lines.append(f"| {r.range_no} | {start} | {end} | {r.objects} | {r.pages} | {r.new_objects} | "
                     f"{r.changed_objects} | {r.seconds:.1f} | {'yes' if r.done else 'no'} |")
    if len(report.ranges) > limit:
        lines.append(f"| ... {len(report.ranges) - limit} more | | | | | | | | |")
    return "\n".join(lines)


@asset(
    group_name="intake",
    kinds={"s3", "postgres"},
    description="The reconciliation sweep: the whole hot bucket listed in parallel key ranges (split at the "
    "previous sweep's key distribution), every document registered in vault_secure.replication_status. "
    "Resumes an interrupted sweep. The safety net behind the change feeds, and the only feed of an OVH site.",
)
def hot_bucket_sweep(
    context: AssetExecutionContext,
    config: SweepConfig,
    hot_site: S3SiteResource,
    cold_site: ColdSiteResource,
    tracking_db: TrackingDatabaseResource,
    intake: IntakeSettingsResource,
) -> MaterializeResult:
    listers = config.listers or intake.sweep_listers
    deadline = time.monotonic() + config.max_minutes * 60 if config.max_minutes else None
    pages_logged = 0

    def on_range(report: SweepReport) -> None:
        nonlocal pages_logged
        if report.pages - pages_logged >= 100:
            pages_logged = report.pages
            context.log.info(f"{report.objects_listed} objects listed, {report.new} new, {report.changed} changed")

    try:
        report = run_sweep(hot_site.client(), hot_site.bucket, tracking_db.store(),
                           destination_bucket=cold_site.bucket, listers=listers, page_size=intake.sweep_page_size,
                           run_id=context.run.run_id, deadline=deadline, on_range=on_range)
    except SweepBusy as exc:
        raise Failure(description=str(exc), allow_retries=False) from exc
    state = "finished" if report.finished else "interrupted (the next run resumes it)"
    context.log.info(f"sweep {report.sweep_id} {state}: {report.objects_listed} objects in {report.pages} pages, "
                     f"{report.new} new, {report.changed} changed, {report.duration_s:.1f}s "
                     f"({report.keys_per_second:.0f} keys/s, {listers} listers)")
    days = sorted(report.days.items())
    return MaterializeResult(metadata={
        "sweep_id": MetadataValue.int(report.sweep_id),
        "finished": MetadataValue.bool(report.finished),
        "resumed": MetadataValue.bool(report.resumed),
        "objects_listed": MetadataValue.int(report.objects_listed),
        "pages": MetadataValue.int(report.pages),
        "new_objects": MetadataValue.int(report.new),
        "changed_objects": MetadataValue.int(report.changed),
        "folder_markers_skipped": MetadataValue.int(report.folder_markers),
        "listers": MetadataValue.int(listers),
        "ranges": MetadataValue.int(len(report.ranges)),
        "split_source": MetadataValue.text(report.split_source),
        "keys_per_second": MetadataValue.float(round(report.keys_per_second, 1)),
        "duration_s": MetadataValue.float(round(report.duration_s, 3)),
        "days_with_new_work": MetadataValue.md(
            "\n".join(["| day | objects now pending |", "|---|---:|", *(f"| {d} | {n} |" for d, n in days[:60])])
            if days else "Nothing new."),
        "key_ranges": MetadataValue.md(ranges_table(report)),
    })
