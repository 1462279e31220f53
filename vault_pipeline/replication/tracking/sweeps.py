"""The reconciliation sweep's progress: one sweep in progress per bucket, its key ranges, and the key
samples the next sweep splits on (013_intake_sweeps.sql)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from vault_pipeline.replication.tracking.connection import TrackingConnection

# The advisory lock of a bucket's sweep: this class (int4, from "sweep") and hashtext(bucket).
SWEEP_LOCK_CLASS = 0x7377656570 & 0x7FFFFFFF


@dataclass(frozen=True)
class SweepRange:
    sweep_id: int
    range_no: int
    start_after: str | None  # exclusive; None: from the first key
    end_key: str | None  # inclusive; None: to the last key
    last_key: str | None  # progress
    objects: int
    pages: int
    new_objects: int
    changed_objects: int
    seconds: float
    done: bool

    @property
    def resume_after(self) -> str | None:
        return self.last_key if self.last_key is not None else self.start_after


@dataclass(frozen=True)
class SweepRecord:
    id: int
    bucket_source: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    listers: int
    split_source: str
    run_id: str | None


_RANGE_COLUMNS = ("sweep_id, range_no, start_after, end_key, last_key, objects, pages, new_objects, changed_objects,"
                  " seconds, done_at IS NOT NULL")
_SWEEP_COLUMNS = "id, bucket_source, started_at, finished_at, listers, split_source, run_id"


class SweepProgress(TrackingConnection):
    @contextmanager
    def sweep_lock(self, bucket: str) -> Iterator[bool]:
        """Hold the bucket's sweep lock for the block; yields False (and holds nothing) when another process
        sweeps the bucket now. A session lock on a connection kept for the block: a process that dies
        releases it with its connection."""
        with self.pool.connection() as conn:
            conn.autocommit = True
            try:
                got = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                                   (SWEEP_LOCK_CLASS, bucket)).fetchone()[0]
                try:
                    yield bool(got)
                finally:
                    if got:
                        conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))",
                                     (SWEEP_LOCK_CLASS, bucket))
            finally:
                conn.autocommit = False

    def open_sweep(self, bucket: str) -> SweepRecord | None:
        with self.pool.connection() as conn:
            row = conn.execute(f"SELECT {_SWEEP_COLUMNS} FROM vault_secure.sweeps"
                               " WHERE bucket_source = %s AND finished_at IS NULL", (bucket,)).fetchone()
        return SweepRecord(*row) if row else None

    def last_finished_sweep(self, bucket: str) -> SweepRecord | None:
        with self.pool.connection() as conn:
            row = conn.execute(f"SELECT {_SWEEP_COLUMNS} FROM vault_secure.sweeps WHERE bucket_source = %s"
                               " AND finished_at IS NOT NULL ORDER BY finished_at DESC, id DESC LIMIT 1",
                               (bucket,)).fetchone()
        return SweepRecord(*row) if row else None

    def split_points_from_samples(self, sweep_id: int, count: int) -> list[str]:
        """`count` keys splitting the sweep's samples into count + 1 parts of about equal size."""
        if count <= 0:
            return []
        with self.pool.connection() as conn:
            bounds = [r[0] for r in conn.execute(
                "SELECT max(key) FROM (SELECT key, ntile(%(parts)s) OVER (ORDER BY key) AS part"
                " FROM vault_secure.sweep_samples WHERE sweep_id = %(sweep)s) s GROUP BY part ORDER BY 1",
                {"parts": count + 1, "sweep": sweep_id}).fetchall()]
        return bounds[:-1]  # the last part's end is the end of the bucket

    def split_points_from_manifest(self, bucket: str, count: int, sample_rows: int = 20_000) -> list[str]:
        """`count` split keys from a random sample of the bucket's rows (TABLESAMPLE: pages, not a scan),
        for a bucket's first sweep."""
        if count <= 0:
            return []
        with self.pool.connection() as conn:
            estimate = conn.execute("SELECT greatest(reltuples, 0) FROM pg_class"
                                    " WHERE oid = 'vault_secure.replication_status'::regclass").fetchone()[0]
            percent = 100.0 if estimate <= sample_rows else max(0.01, 100.0 * sample_rows / estimate)
            keys = sorted(r[0] for r in conn.execute(
                f"SELECT s3_key FROM vault_secure.replication_status TABLESAMPLE SYSTEM ({percent:.4f})"
                " WHERE bucket_source = %s", (bucket,)).fetchall())
        if len(keys) <= count:
            return sorted(set(keys))[:-1] if len(keys) > 1 else []
        step = len(keys) / (count + 1)
        return sorted({keys[int(step * (i + 1))] for i in range(count)})

    def create_sweep(self, bucket: str, *, listers: int, split_points: list[str], split_source: str,
                     run_id: str | None) -> SweepRecord:
        """A new sweep with ranges (None, p1], (p1, p2], ..., (pn, None]."""
        bounds = [None, *split_points, None]
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                f"INSERT INTO vault_secure.sweeps (bucket_source, listers, split_source, run_id)"
                f" VALUES (%s, %s, %s, %s) RETURNING {_SWEEP_COLUMNS}",
                (bucket, listers, split_source, run_id)).fetchone()
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO vault_secure.sweep_ranges (sweep_id, range_no, start_after, end_key)"
                    " VALUES (%s, %s, %s, %s)",
                    [(row[0], i, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)])
        return SweepRecord(*row)

    def sweep_ranges(self, sweep_id: int) -> list[SweepRange]:
        with self.pool.connection() as conn:
            return [SweepRange(*r) for r in conn.execute(
                f"SELECT {_RANGE_COLUMNS} FROM vault_secure.sweep_ranges WHERE sweep_id = %s ORDER BY range_no",
                (sweep_id,)).fetchall()]

    def advance_range(self, sweep_id: int, range_no: int, *, last_key: str | None, objects: int, new: int,
                      changed: int, seconds: float, sample: str | None, done: bool) -> None:
        """Record one listed and registered page of a range (and its last key as a sample)."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                "UPDATE vault_secure.sweep_ranges SET last_key = COALESCE(%s, last_key), objects = objects + %s,"
                " pages = pages + 1, new_objects = new_objects + %s, changed_objects = changed_objects + %s,"
                " seconds = seconds + %s, done_at = CASE WHEN %s THEN now() ELSE done_at END"
                " WHERE sweep_id = %s AND range_no = %s",
                (last_key, objects, new, changed, seconds, done, sweep_id, range_no))
            if sample is not None:
                conn.execute("INSERT INTO vault_secure.sweep_samples (sweep_id, key) VALUES (%s, %s)"
                             " ON CONFLICT DO NOTHING", (sweep_id, sample))

    def finish_sweep(self, sweep_id: int, bucket: str) -> SweepRecord:
        """Mark the sweep finished and keep only its samples (the next sweep's split points)."""
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(f"UPDATE vault_secure.sweeps SET finished_at = now() WHERE id = %s"
                               f" RETURNING {_SWEEP_COLUMNS}", (sweep_id,)).fetchone()
            conn.execute("DELETE FROM vault_secure.sweep_samples WHERE sweep_id IN"
                         " (SELECT id FROM vault_secure.sweeps WHERE bucket_source = %s AND id <> %s)",
                         (bucket, sweep_id))
        return SweepRecord(*row)
