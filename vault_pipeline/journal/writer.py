"""The flusher: moves committed outbox entries into locked segments on the cold site.

One flusher per site at a time (PostgreSQL advisory lock). A flush
  1. refuses to write when the cold site's journal is ahead of the database (the storage is the record:
     the database must first catch up by replaying it),
  2. writes segments that were sequenced before a crash but not confirmed (If-None-Match makes a second
     write of the same bytes a no-op, so nothing is journaled twice),
  3. journals replicated rows that have no entry yet (repair),
  4. sequences and writes new entries, one segment per batch.
Every step commits before the next, so a crash at any point leaves a state the next flush completes.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field

import psycopg

from vault_pipeline.journal import outbox
from vault_pipeline.journal.entries import copy_fields
from vault_pipeline.journal.segments import JournalError, SegmentStore, segment_key

log = logging.getLogger(__name__)


@dataclass
class FlushResult:
    entries: int = 0
    segments: list[str] = field(default_factory=list)
    resumed_segments: int = 0  # sequenced before a crash, written (or found written) now
    repaired_rows: int = 0
    next_seq: int = 1
    duration_s: float = 0.0


class JournalWriter:
    def __init__(self, dsn: str, segments: SegmentStore, *, max_entries_per_segment: int = 5000,
                 connect_timeout: float = 15) -> None:
        self.dsn, self.segments = dsn, segments
        self.site = segments.bucket
        self.max_entries = max_entries_per_segment
        self.connect_timeout = connect_timeout

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=int(self.connect_timeout))

    def flush(self, *, run_id: str | None = None) -> FlushResult:
        started = time.monotonic()
        result = FlushResult()
        with self._connect() as conn:
            outbox.lock_site(conn, self.site)
            try:
                self._refuse_if_storage_ahead(conn)
                for key, entries in outbox.unwritten_segments(conn, self.site):
                    self._write(conn, key, entries, result)
                    result.resumed_segments += 1
                result.repaired_rows = self._repair(conn, run_id)
                while True:
                    with conn.transaction():
                        now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
                        entries = outbox.sequence_batch(
                            conn, self.site, limit=self.max_entries, now=now,
                            segment_key_for=lambda seq: segment_key(self.segments.prefix, seq))
                    if not entries:
                        break
                    self._write(conn, segment_key(self.segments.prefix, entries[0]["seq"]), entries, result)
                result.next_seq = outbox.read_state(conn, self.site)[0].next_seq
            finally:
                outbox.unlock_site(conn, self.site)
        result.duration_s = time.monotonic() - started
        return result

    def _refuse_if_storage_ahead(self, conn: psycopg.Connection) -> None:
        state, _ = outbox.read_state(conn, self.site)
        ahead = next(iter(self.segments.list_segments(after_seq=state.next_seq - 1)), None)
        if ahead is not None:
            raise JournalError(
                f"the cold site's journal has segment {ahead.key} (seq {ahead.first_seq}) beyond this database's "
                f"journal position (next seq {state.next_seq}): the database is behind the storage. Replay the "
                "journal into it (rebuild_tracking_db, incremental) before writing; entries wait in the outbox")

    def _write(self, conn: psycopg.Connection, key: str, entries: list[dict], result: FlushResult) -> None:
        now = dt.datetime.now(dt.UTC)
        written_key, _, _ = self.segments.put_segment(entries, now)
        assert written_key == key, (written_key, key)
        with conn.transaction():
            outbox.mark_written(conn, self.site, key)
        result.entries += len(entries)
        result.segments.append(key)

    def _repair(self, conn: psycopg.Connection, run_id: str | None) -> int:
        repaired = 0
        while True:
            with conn.transaction():
                rows = outbox.unjournaled_rows(conn, self.site, 500)
                for row in rows:
                    outbox.enqueue(conn, {**copy_fields(row, run_id=run_id, adopted=False), "repaired": True})
                outbox.mark_journaled(conn, [row["id"] for row in rows])
            repaired += len(rows)
            if len(rows) < 500:
                break
        if repaired:
            log.warning("journaled %d replicated rows that had no journal entry", repaired)
        return repaired
