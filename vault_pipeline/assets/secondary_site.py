"""rebuilt_tracking_db: the tracking database rebuilt from the cold site's journal (secondary site)."""

import datetime as dt
from typing import Any, Literal

from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, MetadataValue, asset
from pydantic import Field

from vault_pipeline.journal.entries import ACTIONS
from vault_pipeline.journal.rebuild import RebuildError, RebuildReport, rebuild_tracking_db
from vault_pipeline.replication.report import md_escape
from vault_pipeline.resources import ColdSiteResource, ReplicationSettingsResource, S3SiteResource
from vault_pipeline.resources.journal import JournalResource
from vault_pipeline.resources.rebuild_target import RebuildTargetNotConfigured, RebuildTargetResource


class RebuildConfig(Config):
    mode: Literal["full", "incremental"] = Field(
        default="incremental",
        description="full: replay the whole journal from seq 1; incremental: from the position stored in the "
        "target (what the continuous reconstruction sensor runs).")
    sweep_bucket: bool | None = Field(
        default=None,
        description="Also list the cold bucket and rebuild from HEAD the copies the journal does not know. "
        "Default: in full mode only (a listing of millions of objects is too slow for every increment).")


def rebuild_metadata(report: RebuildReport, now: dt.datetime) -> dict[str, Any]:
    lag = report.lag_seconds(now)
    metadata: dict[str, Any] = {
        "mode": MetadataValue.text(report.mode),
        "entries_applied": MetadataValue.int(report.entries_applied),
        **{f"entries_{action}": MetadataValue.int(report.entries.get(action, 0))
           for action in ACTIONS},
        "segments_applied": MetadataValue.int(report.segments),
        "rows_upserted": MetadataValue.int(report.rows_upserted),
        "start_seq": MetadataValue.int(report.start_seq),
        "head_seq": MetadataValue.int(report.next_seq - 1),
        "duration_s": MetadataValue.float(round(report.duration_s, 3)),
        "replay_entries_per_s": MetadataValue.float(round(report.entries_per_s, 1)),
        "rows_per_s": MetadataValue.float(round(report.rows_per_s, 1)),
        "lag_seconds": MetadataValue.float(round(lag, 1)) if lag is not None else MetadataValue.null(),
        "bucket_swept": MetadataValue.bool(report.swept),
    }
    if report.swept:
        metadata["objects_listed"] = MetadataValue.int(report.objects_listed)
        metadata["rebuilt_from_head"] = MetadataValue.int(len(report.rebuilt_from_head))
        metadata["unrebuildable"] = MetadataValue.int(len(report.unrebuildable))
        lines = ["| key | outcome |", "|---|---|"]
        lines += [f"| {md_escape(k)} | rebuilt from HEAD (not in the journal) |" for k in report.rebuilt_from_head[:50]]
        lines += [f"| {md_escape(k)} | {md_escape(why)} |" for k, why in report.unrebuildable[:50]]
        metadata["swept_objects"] = MetadataValue.md("\n".join(lines) if len(lines) > 2 else "nothing to report")
    return metadata


@asset(
    group_name="secondary_site",
    kinds={"postgres", "s3"},
    description="vault_secure.replication_status rebuilt in the secondary site's database "
    "(VAULT_REBUILD_DATABASE_URL) by replaying the cold site's write journal, chain verified; a full rebuild "
    "also sweeps the bucket for copies the journal does not know.",
)
def rebuilt_tracking_db(
    context: AssetExecutionContext,
    config: RebuildConfig,
    hot_site: S3SiteResource,
    cold_site: ColdSiteResource,
    journal: JournalResource,
    replication: ReplicationSettingsResource,
    rebuild_target: RebuildTargetResource,
) -> MaterializeResult:
    try:
        dsn = rebuild_target.require_dsn()
    except RebuildTargetNotConfigured as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    context.log.info(f"{config.mode} rebuild of {rebuild_target.describe()} from {cold_site.describe()}")

    def progress(report: RebuildReport) -> None:
        if report.segments % 20 == 0:
            context.log.info(f"{report.segments} segments, {report.entries_applied} entries applied "
                             f"(seq {report.next_seq - 1})")

    try:
        report = rebuild_tracking_db(
            dsn, journal.segment_store(cold_site), mode=config.mode, sweep=config.sweep_bucket,
            source_bucket=hot_site.bucket, reserved_prefixes=replication.reserved_prefixes, progress=progress)
    except RebuildError as exc:
        raise Failure(description=str(exc), metadata=rebuild_metadata(exc.report, dt.datetime.now(dt.UTC)),
                      allow_retries=False) from None
    for key, why in report.unrebuildable[:20]:
        context.log.warning(f"cold object {key!r} not rebuilt: {why}")
    if report.rebuilt_from_head:
        context.log.warning(f"{len(report.rebuilt_from_head)} cold object(s) were not in the journal and were "
                            "rebuilt from their own metadata (see swept_objects)")
    context.log.info(f"{report.entries_applied} entries applied in {report.duration_s:.1f}s "
                     f"({report.rows_per_s:.0f} rows/s); head seq {report.next_seq - 1}")
    return MaterializeResult(metadata=rebuild_metadata(report, dt.datetime.now(dt.UTC)))
