"""sftp_transfers: documents delivered by SFTP, brought onto the hot site (upstream of hot_inventory).

Thin layer: the transfer is intake/sftp_transfer.py's; this wires resources, turns its report into
materialization metadata and names the day. The partition is the UTC day of the transfer, which is the day
of the hot objects' LastModified, hence the day of hot_inventory they appear in.
"""


import os
from collections import Counter

from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from vault_pipeline.assets.reporting import human_bytes
from vault_pipeline.intake.sftp_transfer import FileOutcome, SftpTransfer, TransferReport
from vault_pipeline.partitions import daily_partitions
from vault_pipeline.replication.report import md_escape
from vault_pipeline.resources import ColdSiteResource, S3SiteResource, TrackingDatabaseResource
from vault_pipeline.resources.sftp_inbox import SftpInboxResource

NOT_CONFIGURED = "the SFTP intake is not configured: set SFTP_HOST, SFTP_USERNAME and SFTP_PRIVATE_KEY_FILE (or " \
    "SFTP_PASSWORD); see README.md, Configuration"


def failures_table(outcomes: list[FileOutcome], limit: int = 50) -> str:
    lines = ["| file | error |", "|---|---|"]
    lines += [f"| {md_escape(o.filename)} | {md_escape(o.error or '')} |" for o in outcomes[:limit]]
    if len(outcomes) > limit:
        lines.append(f"| ... | {len(outcomes) - limit} more in vault_secure.file_transfer_log |")
    return "\n".join(lines)


def phases_table(report: TransferReport) -> str:
    done = report.of("COMPLETED")
    mib = report.completed_bytes / 1024 / 1024
    rows = ["| phase | seconds (sum over files) | MB/s per worker |", "|---|---|---|"]
    for phase in ("download", "upload"):
        seconds = report.phase_seconds(phase)
        rows.append(f"| {phase} | {seconds:.2f} | {mib / seconds:.1f} |" if seconds > 0 else f"| {phase} | 0 | - |")
    rows.append(f"| whole run (wall clock) | {report.wall_seconds:.2f} | {report.mb_per_second:.1f} (all workers) |")
    rows.append(f"| files | {len(done)} | {len(done) / report.wall_seconds:.1f} files/s |"
                if report.wall_seconds > 0 else "| files | 0 | - |")
    return "\n".join(rows)


def transfer_metadata(report: TransferReport, summary: dict) -> dict[str, MetadataValue]:
    done, failed = report.of("COMPLETED"), report.of("FAILED")
    after = Counter((o.note or "") for o in done if o.note)
    metadata: dict[str, MetadataValue] = {
        "files": MetadataValue.int(len(done)),
        "files_failed": MetadataValue.int(len(failed)),
        "files_released": MetadataValue.int(len(report.of("RELEASED"))),
        "mb": MetadataValue.float(float(round(report.completed_bytes / 1024 / 1024, 3))),
        "mb_per_s": MetadataValue.float(float(round(report.mb_per_second, 2))),
        "download_s": MetadataValue.float(float(round(report.phase_seconds("download"), 3))),
        "upload_s": MetadataValue.float(float(round(report.phase_seconds("upload"), 3))),
        "duration_s": MetadataValue.float(float(round(report.wall_seconds, 3))),
        "sftp_connections_opened": MetadataValue.int(report.connections_opened),
        "sftp_connections_lost": MetadataValue.int(report.connections_lost),
        "phases": MetadataValue.md(phases_table(report)),
        "transfer_log": MetadataValue.md(log_table(summary)),
    }
    if failed:
        metadata["failures"] = MetadataValue.md(failures_table(failed))
    if after:
        metadata["notes"] = MetadataValue.md("\n".join(f"- {md_escape(n)} ({c})" for n, c in after.most_common(20)))
    return metadata


def log_table(summary: dict) -> str:
    lines = ["| status | files | bytes |", "|---|---|---|"]
    for status in ("PENDING", "IN_PROGRESS", "COMPLETED", "FAILED"):
        row = summary["by_status"].get(status, {"files": 0, "bytes": 0})
        lines.append(f"| {status} | {row['files']} | {human_bytes(row['bytes'])} |")
    return "\n".join(lines)


@asset(
    partitions_def=daily_partitions,
    group_name="intake",
    kinds={"sftp", "s3", "postgres"},
    description="Documents delivered to the SFTP inbox, transferred onto the hot site under SFTP_HOT_PREFIX by "
    "SFTP_MAX_WORKERS workers on persistent SFTP connections, their SHA-256 taken in the stream and verified on "
    "the hot object, each file logged in vault_secure.file_transfer_log. The partition is the day of the transfer.",
)
def sftp_transfers(
    context: AssetExecutionContext,
    sftp_inbox: SftpInboxResource,
    hot_site: S3SiteResource,
    cold_site: ColdSiteResource,
    tracking_db: TrackingDatabaseResource,
) -> MaterializeResult:
    if not sftp_inbox.configured:
        raise Failure(description=NOT_CONFIGURED, allow_retries=False)
    store = tracking_db.store()
    settings = sftp_inbox.transfer_settings()
    done = 0

    def progress(outcome: FileOutcome) -> None:
        nonlocal done
        done += 1
        if outcome.status == "FAILED":
            context.log.warning(f"FAILED {outcome.filename!r}: {outcome.error}")
        elif done % 500 == 0:
            context.log.info(f"{done} files transferred")

    with sftp_inbox.pool() as pool:
        transfer = SftpTransfer(
            pool=pool, transfer_log=store, hot=hot_site.client(), hot_bucket=hot_site.bucket, settings=settings,
            owner=f"{context.run.run_id}/{os.getpid()}",
            register=lambda objects: store.register(objects, source_bucket=hot_site.bucket,
                                                destination_bucket=cold_site.bucket),
        )
        report = transfer.run(progress=progress)
    summary = store.transfer_summary(settings.inbox_id)
    metadata = transfer_metadata(report, summary)
    context.log.info(f"{len(report.of('COMPLETED'))} file(s), {human_bytes(report.completed_bytes)} transferred from "
                     f"{settings.inbox_id} in {report.wall_seconds:.1f} s ({report.mb_per_second:.1f} MB/s), "
                     f"{len(report.of('FAILED'))} failed")
    if report.stopped:  # the server could not be used: the files went back to PENDING, nothing is lost
        raise Failure(description=f"SFTP transfers stopped: {report.stopped}", metadata=metadata)
    return MaterializeResult(metadata=metadata)
