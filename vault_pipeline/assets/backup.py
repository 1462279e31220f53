"""tracking_db_backup: pg_dump of the tracking database (and Dagster's) to the cold site, daily.

The thin Dagster layer over vault_pipeline/backup: dump in one snapshot with its row counts and journal
head, upload locked and hashed, manifest last, every object journaled, then a completion notice.
"""

import datetime as dt
import shutil
import time
from typing import Any

import psycopg
from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from vault_pipeline.assets.journaling import flush_journal
from vault_pipeline.assets.reporting import human_bytes
from vault_pipeline.backup.catch_up import start_of
from vault_pipeline.backup.dump import DatabaseDump, dump_database
from vault_pipeline.backup.pg_tools import PgToolError
from vault_pipeline.backup.store import (
    MANIFEST,
    BackupError,
    StoredObject,
    backup_id_for,
    manifest_bytes,
    manifest_document,
    retain_until_for,
)
from vault_pipeline.journal.entries import backup_fields
from vault_pipeline.replication.errors import CopyError
from vault_pipeline.resources import ColdSiteResource, TrackingDatabaseResource
from vault_pipeline.resources.completion_webhooks import CompletionWebhooksResource
from vault_pipeline.resources.db_backups import DatabaseBackupResource
from vault_pipeline.resources.journal import JournalResource

STALE_UPLOAD_AGE = dt.timedelta(hours=6)  # an upload older than this under backups/ was left by a killed backup


def backup_table(rows: list[tuple[DatabaseDump, StoredObject, float]]) -> str:
    lines = ["| database | tables | rows | dump size | dump s | upload s | SHA-256 |", "|---|---|---|---|---|---|---|"]
    for dump, stored, upload_s in rows:
        lines.append(f"| {dump.database} | {len(dump.row_counts)} | {dump.rows:,} | {human_bytes(dump.size)} | "
                     f"{dump.seconds:.2f} | {upload_s:.2f} | `{stored.sha256[:16]}…` |")
    return "\n".join(lines)


def largest_tables(dump: DatabaseDump, limit: int = 15) -> str:
    ranked = sorted(dump.row_counts.items(), key=lambda item: item[1], reverse=True)[:limit]
    return "\n".join(["| table | rows |", "|---|---|"] + [f"| {t} | {n:,} |" for t, n in ranked])


@asset(
    group_name="backups",
    kinds={"postgres", "s3"},
    description="pg_dump (custom format) of the tracking database and of Dagster's, taken in one snapshot with "
    "their row counts and journal head, on the cold site under VAULT_DB_BACKUP_PREFIX: STANDARD class, "
    "COMPLIANCE-locked for VAULT_DB_BACKUP_RETENTION_DAYS, SHA-256 in metadata, journaled.",
)
def tracking_db_backup(
    context: AssetExecutionContext,
    cold_site: ColdSiteResource,
    tracking_db: TrackingDatabaseResource,
    journal: JournalResource,
    db_backups: DatabaseBackupResource,
    completion_webhooks: CompletionWebhooksResource,
) -> MaterializeResult:
    started = time.monotonic()
    now = dt.datetime.now(dt.UTC)
    run_id = context.run.run_id
    backup_id = backup_id_for(now, run_id)
    store = db_backups.store(cold_site)
    retain_until = retain_until_for(now, db_backups.retention_days)
    spool = db_backups.spool(backup_id)
    tracking = tracking_db.store()
    try:
        aborted = store.abort_stale_uploads(STALE_UPLOAD_AGE, now)
        if aborted:
            context.log.warning(f"aborted {aborted} multipart upload(s) left under {db_backups.prefix} by a killed "
                                "backup")
        written: list[tuple[DatabaseDump, StoredObject, float]] = []
        for database, dsn in db_backups.databases(tracking_db.dsn).items():
            dump = dump_database(database, dsn, spool, bin_dir=db_backups.bin_dir())
            context.log.info(f"{database}: {dump.rows:,} rows in {len(dump.row_counts)} tables, dump "
                             f"{human_bytes(dump.size)} in {dump.seconds:.1f}s")
            upload_started = time.monotonic()
            stored = store.put_file(store.key(backup_id, f"{database}.dump"), dump.path, dump.sha256,
                                    retain_until=retain_until, database=database)
            upload_s = time.monotonic() - upload_started
            dump.path.unlink(missing_ok=True)
            written.append((dump, stored, upload_s))
        manifest = manifest_document(
            backup_id=backup_id, created_at=now, run_id=run_id, site=cold_site.bucket,
            dumps=[{**dump.manifest_entry(), **stored.as_dict(), "upload_seconds": round(upload_s, 3)}
                   for dump, stored, upload_s in written])
        stored_manifest = store.put_bytes(store.key(backup_id, MANIFEST), manifest_bytes(manifest),
                                          retain_until=retain_until, content_type="application/json",
                                          database="manifest")
    except (PgToolError, BackupError, CopyError, psycopg.Error, OSError) as exc:
        raise Failure(description=f"tracking database backup {backup_id} failed: {exc}", allow_retries=False) from None
    finally:
        shutil.rmtree(spool, ignore_errors=True)

    tracking_dump = written[0][0]
    head = start_of(tracking_dump.journal, cold_site.bucket)  # the journal position the dump contains
    head_seq = head.next_seq
    for dump, stored, _ in written:
        tracking.journal(backup_fields(
            bucket=cold_site.bucket, key=stored.key, version_id=stored.version_id, sha256=stored.sha256,
            size=stored.size, retain_until=retain_until, backup_id=backup_id, database=dump.database,
            journal_next_seq=head_seq if dump.database == "tracking" else None, run_id=run_id))
    tracking.journal(backup_fields(
        bucket=cold_site.bucket, key=stored_manifest.key, version_id=stored_manifest.version_id,
        sha256=stored_manifest.sha256, size=stored_manifest.size, retain_until=retain_until, backup_id=backup_id,
        database="manifest", journal_next_seq=head_seq, run_id=run_id))
    metadata: dict[str, Any] = {
        "backup_id": MetadataValue.text(backup_id),
        "manifest_key": MetadataValue.text(stored_manifest.key),
        "retain_until": MetadataValue.text(retain_until.isoformat()),
        "journal_head_seq": MetadataValue.int(head_seq - 1),
        "journal_head_hash": MetadataValue.text(head.last_hash if head_seq > 1 else "(no journal yet)"),
        "databases": MetadataValue.md(backup_table(written)),
        "largest_tables": MetadataValue.md(largest_tables(tracking_dump)),
        "duration_s": MetadataValue.float(round(time.monotonic() - started, 3)),
    }
    for dump, stored, upload_s in written:
        metadata[f"{dump.database}_dump_bytes"] = MetadataValue.int(stored.size)
        metadata[f"{dump.database}_rows"] = MetadataValue.int(dump.rows)
        metadata[f"{dump.database}_dump_s"] = MetadataValue.float(round(dump.seconds, 3))
        metadata[f"{dump.database}_upload_s"] = MetadataValue.float(round(upload_s, 3))
    metadata.update(flush_journal(context, journal, cold_site, tracking_db))
    notified = completion_webhooks.enqueue(tracking, "backup_complete", backup_id, {
        "backup_id": backup_id, "manifest_key": stored_manifest.key, "journal_head_seq": head_seq - 1,
        "databases": {dump.database: {"key": stored.key, "version_id": stored.version_id, "sha256": stored.sha256,
                                      "bytes": stored.size, "rows": dump.rows} for dump, stored, _ in written},
        "retain_until": retain_until.isoformat(), "run_id": run_id})
    if notified:  # sent now if the receivers answer; completion_webhook_sensor retries what they did not take
        context.log.info(f"completion notice: {completion_webhooks.deliver(tracking, 5.0).summary()}")
    metadata["completion_notice_queued"] = MetadataValue.bool(bool(notified))
    context.log.info(f"backup {backup_id}: {len(written)} database(s), journal head seq {head_seq - 1}, "
                     f"locked until {retain_until:%Y-%m-%d}")
    return MaterializeResult(metadata=metadata)
