"""hot_inventory -> cold_copies -> hot_deletions, daily partitioned.

Thin layer: every decision lives in vault_pipeline.replication; these functions wire resources,
choose the day range and turn reports into materialization metadata.
"""


import os
import time

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from vault_pipeline.assets.journaling import flush_journal
from vault_pipeline.assets.reporting import copy_report_metadata, human_bytes, status_table
from vault_pipeline.assets.sftp import sftp_transfers
from vault_pipeline.partitions import daily_partitions, day_range
from vault_pipeline.replication.copier import ObjectCopier
from vault_pipeline.replication.engine import ObjectResult, replicate_days
from vault_pipeline.replication.hot_cleanup import HotDeletionRefused, delete_verified_hot_objects
from vault_pipeline.replication.shards import Shard, ShardError
from vault_pipeline.replication.verify import cold_bucket_problem
from vault_pipeline.resources import (
    ColdSiteResource,
    ReplicationSettingsResource,
    S3SiteResource,
    TrackingDatabaseResource,
)
from vault_pipeline.resources.journal import JournalResource


@asset(
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[sftp_transfers],  # one of the hot site's sources; the others (applications writing to S3) are not assets
    group_name="replication",
    kinds={"postgres"},
    description="Documents on the hot site for the day (UTC LastModified), as registered in "
    "vault_secure.replication_status by the change feeds and the reconciliation sweep. Read from the "
    "tracking database, never from a listing: its cost grows with the day, not with the bucket.",
)
def hot_inventory(
    context: AssetExecutionContext,
    hot_site: S3SiteResource,
    tracking_db: TrackingDatabaseResource,
) -> MaterializeResult:
    started = time.monotonic()
    first_day, last_day = day_range(context.partition_key_range)
    store = tracking_db.store()
    counts = store.status_counts(source_bucket=hot_site.bucket, first_day=first_day, last_day=last_day)
    total = sum(c["objects"] for c in counts.values())
    total_bytes = sum(c["bytes"] for c in counts.values())
    keys = context.partition_key_range
    pending = counts.get("pending", {}).get("objects", 0)
    context.log.info(f"{total} objects ({human_bytes(total_bytes)}) registered for {keys.start}..{keys.end}, "
                     f"{pending} pending")
    return MaterializeResult(metadata={
        "objects": MetadataValue.int(total),
        "bytes": MetadataValue.int(total_bytes),
        "pending": MetadataValue.int(pending),
        "failed": MetadataValue.int(counts.get("failed", {}).get("objects", 0)),
        "replicated": MetadataValue.int(counts.get("replicated", {}).get("objects", 0)),
        "status": MetadataValue.md(status_table(counts)),
        "duration_s": MetadataValue.float(round(time.monotonic() - started, 3)),
    })


@asset(
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[hot_inventory],
    group_name="replication",
    kinds={"s3", "postgres"},
    description="Verified, COMPLIANCE-locked copies on the cold site of every document of the day.",
)
def cold_copies(
    context: AssetExecutionContext,
    hot_site: S3SiteResource,
    cold_site: ColdSiteResource,
    tracking_db: TrackingDatabaseResource,
    replication: ReplicationSettingsResource,
    journal: JournalResource,
) -> MaterializeResult:
    try:  # before anything is claimed: a run with a malformed shard tag copies nothing
        shard = Shard.from_tags(context.run.tags)
    except ShardError as exc:
        raise Failure(description=str(exc), allow_retries=False) from exc
    first_day, last_day = day_range(context.partition_key_range)
    problem = cold_bucket_problem(cold_site.client(), cold_site.bucket)
    if problem:  # one clear error instead of every object failing the same way; rows stay pending
        raise Failure(description=problem, allow_retries=False)
    store = tracking_db.store()
    copier = ObjectCopier(
        hot=hot_site.client(), hot_bucket=hot_site.bucket, cold=cold_site.client(), cold_bucket=cold_site.bucket,
        policy=replication.retention_policy(), options=replication.copy_options(cold_site.storage_class),
    )
    done = 0

    def progress(result: ObjectResult) -> None:
        nonlocal done
        done += 1
        if result.status == "failed":
            context.log.warning(f"FAILED {result.key!r} after {result.attempts} attempt(s): {result.error}")
        elif done % 500 == 0:
            context.log.info(f"{done} objects processed")

    report = replicate_days(
        store=store, copier=copier, source_bucket=hot_site.bucket, first_day=first_day, last_day=last_day,
        owner=f"{context.run.run_id}/{os.getpid()}", run_id=context.run.run_id,
        settings=replication.engine_settings(), progress=progress, shard=shard,
    )
    metadata = copy_report_metadata(report)
    if shard is not None:  # which share of the day this run took: its own slice, and what it helped with
        metadata["shard"] = MetadataValue.text(str(shard))
        metadata["objects_own_slice"] = MetadataValue.int(report.own_rows)
        metadata["objects_stolen"] = MetadataValue.int(report.stolen_rows)
        context.log.info(f"shard {shard}: {report.own_rows} object(s) of its own slice, {report.stolen_rows} "
                         "taken from the other slices")
    counts = store.status_counts(source_bucket=hot_site.bucket, first_day=first_day, last_day=last_day)
    replicated = counts.get("replicated", {"objects": 0, "bytes": 0})
    # Verified before this run and left alone (adopted copies were verified by this run).
    metadata["objects_skipped"] = MetadataValue.int(
        max(0, replicated["objects"] - report.count("replicated") - report.count("adopted")))
    metadata["bytes_skipped"] = MetadataValue.int(
        max(0, replicated["bytes"] - report.bytes("replicated") - report.bytes("adopted")))
    metadata["status"] = MetadataValue.md(status_table(counts))
    metadata.update(flush_journal(context, journal, cold_site, tracking_db))
    if report.failures:
        raise Failure(
            description=f"{len(report.failures)} object(s) still failed after their retries "
            f"({report.count('replicated')} copied). First: {report.failures[0].key!r}: {report.failures[0].error}",
            metadata=metadata,
        )
    if report.stopped:  # rows not claimed stay pending for the next run
        raise Failure(description=f"stopped claiming before the day was done: {report.stopped}", metadata=metadata)
    return MaterializeResult(metadata=metadata)


@asset(
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[cold_copies],
    group_name="replication",
    kinds={"s3"},
    description="Optional removal from the hot site of documents whose cold copy is verified "
    "(DELETE_FROM_OVH_AFTER_REPLICATION, off by default). Every deletion is audited.",
)
def hot_deletions(
    context: AssetExecutionContext,
    hot_site: S3SiteResource,
    cold_site: ColdSiteResource,
    tracking_db: TrackingDatabaseResource,
    replication: ReplicationSettingsResource,
    journal: JournalResource,
) -> MaterializeResult:
    if not replication.delete_after_replication:
        return MaterializeResult(
            metadata={"enabled": MetadataValue.bool(False), "objects_deleted": MetadataValue.int(0)})
    first_day, last_day = day_range(context.partition_key_range)
    try:
        report = delete_verified_hot_objects(
            store=tracking_db.store(), hot=hot_site.client(), hot_bucket=hot_site.bucket, cold=cold_site.client(),
            cold_bucket=cold_site.bucket, first_day=first_day, last_day=last_day, run_id=context.run.run_id,
            # A shard run deletes only its slice: the rows its own blocking checks audited.
            shard=Shard.from_tags(context.run.tags),
        )
    except HotDeletionRefused as exc:  # nothing was deleted; the message names the server behaviour and fix
        raise Failure(description=str(exc), allow_retries=False) from exc
    for key, reason in report.kept:
        context.log.warning(f"kept {key!r} on the hot site: {reason}")
    return MaterializeResult(metadata={
        "enabled": MetadataValue.bool(True),
        "objects_deleted": MetadataValue.int(len(report.deleted)),
        "bytes_deleted": MetadataValue.int(report.deleted_bytes),
        "objects_kept": MetadataValue.int(len(report.kept)),
        **flush_journal(context, journal, cold_site, tracking_db),
    })
