"""Rebuild vault_secure.replication_status from the cold site: the journal first, then the bucket itself.

1. Replay: segments in seq order (reader.py checks every link and stops at the first broken one). Each
   segment is applied in one transaction together with the replay position (`rebuild_state`), so a
   rebuild that dies resumes where it stopped, and replaying an entry twice changes nothing: rows are
   upserted, last writer (highest seq) wins per key. The target also gets the entries themselves
   (`journal_entries`) and the journal head (`journal_state`), so a promoted secondary continues the
   same journal and can seal it.
2. Sweep (full mode by default): the bucket listing's latest versions that the journal does not
   account for are rebuilt from a HEAD of their own metadata (each copy describes itself) and reported;
   such rows are left `journaled = false`, so a promoted secondary journals them on its first flush.

One rebuild per target and site at a time (advisory lock on the target), so overlapping runs of the
continuous reconstruction never interleave their last-writer-wins upserts.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from queue import Full, Queue
from typing import Any, Literal

import psycopg

from vault_pipeline.journal.chain import GENESIS_HASH, ChainError, ChainState, canonical_json
from vault_pipeline.journal.entries import BUSINESS_COLUMNS, RECORD_ACTIONS, parse_time, row_from_copy
from vault_pipeline.journal.reader import read_segments
from vault_pipeline.journal.segments import JournalError, SegmentStore, StoredSegment
from vault_pipeline.replication.identity import application_ids
from vault_pipeline.replication.policy import DOCUMENT_TYPE_KEYS, recorded_base
from vault_pipeline.replication.tracking import TrackingStore
from vault_pipeline.replication.verify import (
    META_DOCUMENT_TYPE,
    META_PART_SIZE,
    META_RETAIN_UNTIL,
    META_RETENTION_YEARS,
    META_SHA256,
    META_SOURCE_ETAG,
    META_SOURCE_LAST_MODIFIED,
    META_SOURCE_VERSION,
)

Mode = Literal["full", "incremental"]
REBUILD_LOCK_NAMESPACE = 0x7262646C  # "rbdl": pg_advisory_lock(namespace, hashtext(site)) on the target
# Columns a replayed copy writes; hot_deleted_at is kept when a copy does not carry one (as on the primary,
# where a re-replication leaves it alone).
UPSERT_COLUMNS = tuple(c for c in BUSINESS_COLUMNS if c not in ("s3_key", "bucket_source"))


class RebuildError(RuntimeError):
    """The rebuild stopped; `report` says how far it got (everything before the fault is applied)."""

    def __init__(self, message: str, report: RebuildReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class RebuildReport:
    site: str
    mode: Mode
    start_seq: int
    next_seq: int = 1
    last_hash: str = GENESIS_HASH
    segments: int = 0
    entries: Counter[str] = field(default_factory=Counter)
    rows_upserted: int = 0
    objects_listed: int = 0
    rebuilt_from_head: list[str] = field(default_factory=list)
    unrebuildable: list[tuple[str, str]] = field(default_factory=list)
    swept: bool = False
    last_entry_time: dt.datetime | None = None
    duration_s: float = 0.0
    replay_s: float = 0.0

    @property
    def entries_applied(self) -> int:
        return sum(self.entries.values())

    @property
    def entries_per_s(self) -> float:
        return self.entries_applied / self.replay_s if self.replay_s > 0 else 0.0

    @property
    def rows_per_s(self) -> float:
        return self.rows_upserted / self.duration_s if self.duration_s > 0 else 0.0

    def lag_seconds(self, now: dt.datetime) -> float | None:
        """How far the target is behind the journal it has read: age of the newest entry applied."""
        return None if self.last_entry_time is None else max(0.0, (now - self.last_entry_time).total_seconds())


def stored_position(conn: psycopg.Connection, site: str) -> tuple[ChainState, dt.datetime | None]:
    row = conn.execute("SELECT next_seq, last_hash, last_entry_time FROM vault_secure.rebuild_state WHERE site = %s",
                       (site,)).fetchone()
    return (ChainState(int(row[0]), row[1]), row[2]) if row else (ChainState(), None)


def rebuild_tracking_db(
    target_dsn: str, segments: SegmentStore, *, mode: Mode = "incremental", sweep: bool | None = None,
    source_bucket: str, reserved_prefixes: Iterable[str] = (), head_concurrency: int = 16,
    progress: Callable[[RebuildReport], None] | None = None,
) -> RebuildReport:
    """Replay the cold site's journal into `target_dsn` (and sweep the bucket); see the module docstring.
    `source_bucket` names the hot bucket for rows rebuilt from a HEAD (the journal carries its own)."""
    if mode not in ("full", "incremental"):
        raise ValueError(f"mode must be 'full' or 'incremental', not {mode!r}")
    started = time.monotonic()
    site = segments.bucket
    with TrackingStore(target_dsn, max_size=2) as store:
        store.migrate()
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (REBUILD_LOCK_NAMESPACE, site))
        start, last_time = (ChainState(), None) if mode == "full" else stored_position(conn, site)
        report = RebuildReport(site=site, mode=mode, start_seq=start.next_seq, next_seq=start.next_seq,
                               last_hash=start.last_hash, last_entry_time=last_time)
        try:
            try:
                for segment, state in prefetched(read_segments(segments, start)):
                    _apply_segment(conn, site, segment, state, report)
                    if progress:
                        progress(report)
            except (ChainError, JournalError) as exc:
                report.replay_s = report.duration_s = time.monotonic() - started
                raise RebuildError(f"journal replay stopped at seq {report.next_seq}: {exc}", report) from exc
            report.replay_s = time.monotonic() - started
            if sweep if sweep is not None else mode == "full":
                report.swept = True
                _sweep(conn, segments, report, source_bucket=source_bucket,
                       reserved=(*tuple(reserved_prefixes), segments.prefix), concurrency=head_concurrency)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (REBUILD_LOCK_NAMESPACE, site))
    report.duration_s = time.monotonic() - started
    return report


# -- replay -------------------------------------------------------------------------------------------
def prefetched(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate `items` in a background thread, `depth` ahead: the next segments are fetched, decoded and
    chain-checked while the database applies the current one (its waits release the GIL). An exception
    of the producer is raised here, in order, after the items before it."""
    queue: Queue[tuple[str, Any]] = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        queue.put(("item", item), timeout=0.5)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            queue.put(("error", exc))

    thread = threading.Thread(target=produce, name="vault-rebuild-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join(timeout=10)


def _apply_segment(conn: psycopg.Connection, site: str, segment: StoredSegment, state: ChainState,
                   report: RebuildReport) -> None:
    rows: dict[tuple[str, str], dict[str, Any]] = {}  # last writer wins inside the segment too
    later: list[tuple[str, dict[str, Any]]] = []  # deletions / extensions of rows from earlier segments
    for entry in segment.entries:
        action = entry.get("action")
        if action == "copy":
            row = row_from_copy(entry)
            previous = rows.get((row["bucket_source"], row["s3_key"]))
            if previous and previous.get("hot_deleted_at") and not row.get("hot_deleted_at"):
                row["hot_deleted_at"] = previous["hot_deleted_at"]
            rows[(row["bucket_source"], row["s3_key"])] = row
        elif action == "hot_delete":
            key = (entry.get("source_bucket"), entry["key"])
            if key in rows:
                rows[key]["hot_deleted_at"] = parse_time(entry.get("hot_deleted_at") or entry["time"])
            else:
                later.append(("hot_delete", entry))
        elif action == "retention_extend":
            matching = [r for r in rows.values() if r["s3_key"] == entry["key"]
                        and r["aws_version_id"] == entry["version_id"]]
            if matching:
                until = parse_time(entry["retain_until"])
                for r in matching:
                    r["aws_object_lock_until"] = (max(r["aws_object_lock_until"], until)
                                                  if r["aws_object_lock_until"] and until else until)
            else:
                later.append(("retention_extend", entry))
        elif action not in RECORD_ACTIONS:
            raise RebuildError(f"journal entry seq={entry.get('seq')} in {segment.key}: unknown action {action!r}",
                               report)
        report.entries[str(action)] += 1
    last_time = parse_time(segment.entries[-1].get("time"))
    with conn.transaction():
        _upsert_rows(conn, list(rows.values()))
        for action, entry in later:
            if action == "hot_delete":
                conn.execute(
                    "UPDATE vault_secure.replication_status SET hot_deleted_at = %s, updated_at = now()"
                    " WHERE s3_key = %s AND (bucket_source = %s OR %s::text IS NULL) AND bucket_dest = %s",
                    (parse_time(entry.get("hot_deleted_at") or entry["time"]), entry["key"],
                     entry.get("source_bucket"), entry.get("source_bucket"), site))
            else:
                conn.execute(
                    "UPDATE vault_secure.replication_status"
                    " SET aws_object_lock_until = GREATEST(aws_object_lock_until, %s), updated_at = now()"
                    " WHERE bucket_dest = %s AND s3_key = %s AND aws_version_id = %s",
                    (parse_time(entry["retain_until"]), site, entry["key"], entry["version_id"]))
        _copy_entries(conn, site, segment)
        conn.execute(
            """
            INSERT INTO vault_secure.journal_state (site, next_seq, last_hash, last_time) VALUES (%s, %s, %s, %s)
            ON CONFLICT (site) DO UPDATE SET next_seq = EXCLUDED.next_seq, last_hash = EXCLUDED.last_hash,
                last_time = EXCLUDED.last_time, updated_at = now()
            WHERE vault_secure.journal_state.next_seq <= EXCLUDED.next_seq
            """,
            (site, state.next_seq, state.last_hash, last_time))
        conn.execute(
            """
            INSERT INTO vault_secure.rebuild_state (site, next_seq, last_hash, last_entry_time, entries_applied)
            VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (site) DO UPDATE SET next_seq = EXCLUDED.next_seq, last_hash = EXCLUDED.last_hash,
                last_entry_time = EXCLUDED.last_entry_time,
                entries_applied = vault_secure.rebuild_state.entries_applied + %s, updated_at = now()
            """,
            (site, state.next_seq, state.last_hash, last_time, len(segment.entries), len(segment.entries)))
    report.segments += 1
    report.rows_upserted += len(rows)
    report.next_seq, report.last_hash, report.last_entry_time = state.next_seq, state.last_hash, last_time


def _upsert_rows(conn: psycopg.Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = BUSINESS_COLUMNS
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS rebuild_rows (LIKE vault_secure.replication_status"
                 " INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
    with conn.cursor().copy(f"COPY rebuild_rows ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row.get(c) for c in columns])
    assignments = ", ".join(
        f"{c} = COALESCE(EXCLUDED.{c}, r.{c})" if c == "hot_deleted_at" else f"{c} = EXCLUDED.{c}"
        for c in UPSERT_COLUMNS)
    conn.execute(
        f"""
        INSERT INTO vault_secure.replication_status AS r ({', '.join(columns)}, journaled)
        SELECT {', '.join(columns)}, true FROM rebuild_rows
        ON CONFLICT (bucket_source, s3_key) DO UPDATE SET {assignments}, journaled = true,
            lease_owner = NULL, lease_expires_at = NULL, cold_upload_id = NULL, updated_at = now()
        """)


def _copy_entries(conn: psycopg.Connection, site: str, segment: StoredSegment) -> None:
    """The entries into the target's journal index, from their stored JSON text (no re-encoding). For a
    replayed entry `fields` holds the whole entry: the flusher only reads `fields` of unsequenced ones."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS rebuild_entries (LIKE vault_secure.journal_entries"
                 " INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
    lines = segment.lines or tuple(canonical_json(e) for e in segment.entries)
    with conn.cursor().copy(
            "COPY rebuild_entries (site, action, object_key, version_id, fields, seq, entry, entry_hash, segment_key)"
            " FROM STDIN") as copy:
        for entry, line in zip(segment.entries, lines, strict=True):
            text = line.decode("utf-8")
            # fields '{}': a sequenced entry's fields are its entry (journal/outbox.py sequence_batch)
            copy.write_row([site, entry["action"], entry["key"], entry.get("version_id"), "{}", entry["seq"], text,
                            entry["entry_hash"], segment.key])
    conn.execute(
        "INSERT INTO vault_secure.journal_entries"
        " (site, action, object_key, version_id, fields, seq, entry, entry_hash, segment_key, written_at)"
        " SELECT site, action, object_key, version_id, fields, seq, entry, entry_hash, segment_key, now()"
        " FROM rebuild_entries ON CONFLICT (site, seq) DO NOTHING")


# -- sweep --------------------------------------------------------------------------------------------
def _sweep(conn: psycopg.Connection, segments: SegmentStore, report: RebuildReport, *, source_bucket: str,
           reserved: tuple[str, ...], concurrency: int) -> None:
    client, bucket = segments.client, segments.bucket
    paginator = client.get_paginator("list_object_versions")
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="vault-sweep") as pool:
        for page in paginator.paginate(Bucket=bucket):
            latest = [v for v in page.get("Versions") or [] if v.get("IsLatest") and not v["Key"].startswith(reserved)]
            report.objects_listed += len(latest)
            if not latest:
                continue
            known = dict(conn.execute(
                "SELECT s3_key, aws_version_id FROM vault_secure.replication_status"
                " WHERE bucket_dest = %s AND s3_key = ANY(%s)",
                (bucket, [v["Key"] for v in latest])).fetchall())
            missing = [v for v in latest if known.get(v["Key"]) != v["VersionId"]]
            for version, outcome in zip(missing, pool.map(
                    lambda v: _row_from_head(client, bucket, v["Key"], v["VersionId"], source_bucket), missing),
                    strict=True):
                if isinstance(outcome, str):
                    report.unrebuildable.append((version["Key"], outcome))
                    continue
                with conn.transaction():
                    existing = conn.execute(
                        "SELECT aws_version_id, previous_cold_version_ids, replication_count, hot_deleted_at"
                        " FROM vault_secure.replication_status WHERE bucket_source = %s AND s3_key = %s",
                        (outcome["bucket_source"], outcome["s3_key"])).fetchone()
                    if existing:
                        previous = list(existing[1] or [])
                        if existing[0] and existing[0] not in previous:
                            previous.append(existing[0])
                        outcome.update(previous_cold_version_ids=previous, replication_count=(existing[2] or 0) + 1,
                                       hot_deleted_at=existing[3])
                    _upsert_rows(conn, [outcome])
                    # Not in the journal: leave it for the first flush of a promoted secondary to journal.
                    conn.execute("UPDATE vault_secure.replication_status SET journaled = false"
                                 " WHERE bucket_source = %s AND s3_key = %s",
                                 (outcome["bucket_source"], outcome["s3_key"]))
                report.rebuilt_from_head.append(version["Key"])
                report.rows_upserted += 1


def _row_from_head(client: Any, bucket: str, key: str, version_id: str, source_bucket: str) -> dict[str, Any] | str:
    """The row a cold object describes, or why it cannot be rebuilt."""
    try:
        head = client.head_object(Bucket=bucket, Key=key, VersionId=version_id, ChecksumMode="ENABLED")
    except Exception as exc:  # a listed object that cannot be read: report, never stop the sweep
        return f"HEAD failed: {exc}"
    meta: Mapping[str, str] = head.get("Metadata") or {}
    missing = [m for m in (META_SHA256, META_SOURCE_ETAG, META_SOURCE_LAST_MODIFIED, META_DOCUMENT_TYPE)
               if not meta.get(m)]
    if missing:
        return f"no vault metadata ({', '.join(missing)} missing): not written by vault-pipeline"
    try:
        last_modified = dt.datetime.fromisoformat(meta[META_SOURCE_LAST_MODIFIED]).astimezone(dt.UTC)
        part_size = int(meta[META_PART_SIZE]) if meta.get(META_PART_SIZE) else None
        years = int(meta[META_RETENTION_YEARS]) if meta.get(META_RETENTION_YEARS) else None
    except ValueError as exc:
        return f"malformed vault metadata: {exc}"
    checksum = head.get("ChecksumSHA256")
    sha = meta[META_SHA256]
    if checksum and "-" not in checksum and part_size is None and base64.b64decode(checksum).hex() != sha:
        return f"its SHA-256 checksum disagrees with {META_SHA256}: not a verified copy"
    now = dt.datetime.now(dt.UTC)
    ids = application_ids(meta)
    asked_until = parse_time(meta.get(META_RETAIN_UNTIL))
    base, note = (None, None) if years is None or asked_until is None else recorded_base(
        meta, last_modified, years, asked_until)
    return {
        "s3_key": key, "bucket_source": source_bucket, "bucket_dest": bucket,
        "ovh_etag": meta[META_SOURCE_ETAG], "ovh_size": int(head.get("ContentLength", 0)),
        "status": "replicated", "retry_count": 0, "error_message": None, "failed_at": None,
        "document_id": ids.document_id, "user_id": ids.user_id,
        "replicated_at": head.get("LastModified"), "source_last_modified": last_modified,
        "partition_day": last_modified.date(), "source_version_id": meta.get(META_SOURCE_VERSION),
        "sha256": sha, "cold_checksum": checksum,
        "cold_checksum_type": None if not checksum else ("COMPOSITE" if part_size else "FULL_OBJECT"),
        "part_size": part_size, "document_type": meta[META_DOCUMENT_TYPE],
        "source_document_type": next((meta[k] for k in DOCUMENT_TYPE_KEYS if meta.get(k)), None),
        "retention_years": years,
        "aws_object_lock_until": head.get("ObjectLockRetainUntilDate") or parse_time(meta.get(META_RETAIN_UNTIL)),
        "retention_base": base, "retention_note": note, "storage_class": head.get("StorageClass") or "STANDARD",
        "aws_version_id": version_id, "aws_etag": head.get("ETag"), "previous_cold_version_ids": [],
        "replication_count": 1, "verified_at": now, "hot_deleted_at": None,
    }
