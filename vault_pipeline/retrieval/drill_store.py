"""The restore drill's records: `vault_secure.restore_drills` (migration 004), one row per sampled object
version, and the settings a drill samples, restores and reads with.

`DrillStore` samples `replicated` rows at random into drill items in one transaction, lists the pending
ones, moves an item to its next state (a final item never changes again) and holds the per-cold-bucket
drill lock (a PostgreSQL session advisory lock, released by the server if the process dies). The drill's
run logic, which decides those states from the cold site's answers, is `drills.py`.

Plain Python: no Dagster here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from psycopg.rows import dict_row

from vault_pipeline.replication.tracking import TrackingStore
from vault_pipeline.retrieval.cold import TIERS, MiB
from vault_pipeline.settings import setting_default

Tier = Literal["Bulk", "Standard", "Expedited"]
PENDING_STATES: tuple[str, ...] = ("requested", "restored", "not_needed")
FINAL_STATES: tuple[str, ...] = ("verified", "mismatch", "failed")
DRILL_LOCK_CLASS = 0x76726400  # "vrd\0": advisory-lock namespace of the drill (key: hash of the cold bucket)
NOW = object()  # DrillStore.update: set a timestamp column from the database's clock
UPDATABLE_COLUMNS = frozenset({
    "restore_required", "restore_status", "restored_at", "bytes_read", "computed_sha256", "metadata_sha256",
    "read_seconds", "verified_at", "error",
})


@dataclass(frozen=True)
class DrillSettings:
    """How a drill samples, restores and reads. Defaults are the production ones."""

    tier: Tier = setting_default("restore_drill_tier")  # noqa: RUF009 (a str, read once)
    restore_days: int = 7  # a restored copy must outlive the gap until a run reads it
    # Bulk promises 48 h; past this, the item failed
    deadline: dt.timedelta = dt.timedelta(hours=setting_default("restore_drill_deadline_hours"))
    exclude_recent_days: int = 90  # a version drilled within this many days is not sampled again
    chunk_size: int = MiB
    read_concurrency: int = 4

    def __post_init__(self) -> None:
        if self.tier not in TIERS:
            raise ValueError(f"restore tier must be one of {', '.join(TIERS)}, not {self.tier!r}")
        if not 1 <= self.restore_days <= 30:
            raise ValueError("restore_days must be between 1 and 30")
        if self.chunk_size < 64 * 1024 or self.read_concurrency < 1:
            raise ValueError("chunk_size must be at least 64 KiB and read_concurrency at least 1")


@dataclass(frozen=True)
class DrillItem:
    """One sampled object version, as recorded in vault_secure.restore_drills."""

    id: int
    drill_id: str
    object_key: str
    cold_version_id: str
    expected_sha256: str
    expected_size: int
    tier: str
    restore_days: int
    requested_at: dt.datetime
    state: str
    restore_required: bool | None
    restore_status: str | None
    overdue: bool = False  # pending for longer than the deadline when it was fetched


class DrillStore:
    """vault_secure.restore_drills over the tracking database's pool (schema from 004_restore_drills.sql)."""

    def __init__(self, store: TrackingStore) -> None:
        self.store = store
        self.pool = store.pool

    @contextmanager
    def exclusive(self, cold_bucket: str) -> Iterator[bool]:
        """Hold the drill lock of `cold_bucket` for the block; yields False when another process has it.

        A session-level advisory lock on a dedicated connection: it is released when the block ends or,
        if the process dies, when PostgreSQL sees the connection close. No lease to expire or clean up.
        """
        with self.pool.connection() as conn:
            acquired = bool(conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (DRILL_LOCK_CLASS, cold_bucket)).fetchone()[0])
            conn.commit()
            try:
                yield acquired
            finally:
                if acquired:
                    conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (DRILL_LOCK_CLASS, cold_bucket))
                    conn.commit()

    def sample(
        self, *, drill_id: str, run_id: str | None, source_bucket: str, cold_bucket: str, size: int,
        settings: DrillSettings,
    ) -> list[DrillItem]:
        """Pick up to `size` replicated rows at random and record them as drill items, in one transaction.

        Skipped: versions drilled within `exclude_recent_days` and versions with an item still pending.
        On a large manifest (more than a million rows by the planner's estimate) a block sample
        (TABLESAMPLE SYSTEM) of a few thousand rows is drawn first instead of sorting the whole table by
        random(): 2 M rows take ~0.8 s to sort, the block sample ~10 ms. Blocks hold rows inserted
        together, so the sample is less uniform within a block; it falls back to the full sort when the
        block sample is too small.
        """
        if size <= 0:
            return []
        params = {"drill": drill_id, "run": run_id, "src": source_bucket, "dst": cold_bucket, "n": size,
                  "tier": settings.tier, "days": settings.restore_days,
                  "recent": settings.exclude_recent_days}
        with self.pool.connection() as conn, conn.transaction():
            estimate = float(conn.execute(
                "SELECT reltuples FROM pg_class WHERE oid = 'vault_secure.replication_status'::regclass"
            ).fetchone()[0])
            rows: list[dict[str, Any]] = []
            if estimate > 1_000_000:
                percent = min(100.0, 100.0 * max(5000, 100 * size) / estimate)
                rows = self._insert_sample(conn, params, f"TABLESAMPLE SYSTEM ({percent:.6f})")
                if len(rows) < size:  # unlucky blocks or a heavily excluded table: sort everything
                    conn.execute("DELETE FROM vault_secure.restore_drills WHERE drill_id = %s", (drill_id,))
                    rows = []
            if not rows:
                rows = self._insert_sample(conn, params, "")
        return [_item(r) for r in rows]

    @staticmethod
    def _insert_sample(conn: Any, params: dict[str, Any], tablesample: str) -> list[dict[str, Any]]:
        return conn.cursor(row_factory=dict_row).execute(
            f"""
            INSERT INTO vault_secure.restore_drills
                (drill_id, run_id, source_bucket, cold_bucket, object_key, cold_version_id, expected_sha256,
                 expected_size, tier, restore_days, state)
            SELECT %(drill)s, %(run)s, r.bucket_source, r.bucket_dest, r.s3_key, r.aws_version_id,
                   r.sha256, r.ovh_size, %(tier)s, %(days)s, 'requested'
            FROM vault_secure.replication_status r {tablesample}
            WHERE r.bucket_source = %(src)s AND r.bucket_dest = %(dst)s AND r.status = 'replicated'
              AND r.aws_version_id IS NOT NULL AND r.sha256 IS NOT NULL
              AND NOT EXISTS (
                  SELECT 1 FROM vault_secure.restore_drills d
                  WHERE d.cold_bucket = r.bucket_dest AND d.object_key = r.s3_key
                    AND d.cold_version_id = r.aws_version_id
                    AND (d.requested_at > now() - make_interval(days => %(recent)s)
                         OR d.state IN ('requested', 'restored', 'not_needed')))
            ORDER BY random()
            LIMIT %(n)s
            RETURNING *, false AS overdue
            """,
            params,
        ).fetchall()

    def pending(self, cold_bucket: str, deadline: dt.timedelta) -> list[DrillItem]:
        """Every item of every drill on this bucket whose bytes are still to be read, oldest first."""
        with self.pool.connection() as conn:
            rows = conn.cursor(row_factory=dict_row).execute(
                "SELECT *, requested_at < now() - %s AS overdue FROM vault_secure.restore_drills"
                " WHERE cold_bucket = %s AND state IN ('requested', 'restored', 'not_needed')"
                " ORDER BY requested_at, id",
                (deadline, cold_bucket),
            ).fetchall()
        return [_item(r) for r in rows]

    def pending_count(self, cold_bucket: str) -> int:
        """Items whose bytes are still to be read (cheap: partial index)."""
        with self.pool.connection() as conn:
            return int(conn.execute(
                "SELECT count(*) FROM vault_secure.restore_drills"
                " WHERE cold_bucket = %s AND state IN ('requested', 'restored', 'not_needed')",
                (cold_bucket,),
            ).fetchone()[0])

    def update(self, item_id: int, state: str, *, run_id: str | None = None, checked: bool = True,
               **columns: Any) -> bool:
        """Move a pending item to `state`, setting `columns` (NOW: the database's clock, kept if already
        set). A final item is never changed again: the WHERE clause only matches pending items."""
        unknown = set(columns) - UPDATABLE_COLUMNS
        if unknown:
            raise ValueError(f"unknown restore_drills columns: {sorted(unknown)}")
        sets = ["state = %(state)s", "updated_at = now()"]
        params: dict[str, Any] = {"state": state, "run": run_id, "id": item_id}
        for name, value in columns.items():
            if value is NOW:
                sets.append(f"{name} = COALESCE({name}, now())")
            else:
                sets.append(f"{name} = %({name})s")
                params[name] = value
        if checked:
            sets += ["checks = checks + 1", "last_checked_at = now()"]
        if state in FINAL_STATES:
            sets += ["finished_at = now()", "finished_run_id = %(run)s"]
        with self.pool.connection() as conn, conn.transaction():
            cur = conn.execute(
                f"UPDATE vault_secure.restore_drills SET {', '.join(sets)}"
                " WHERE id = %(id)s AND state IN ('requested', 'restored', 'not_needed')",
                params,
            )
            return cur.rowcount == 1

    def items(self, drill_id: str | None = None, cold_bucket: str | None = None) -> list[dict[str, Any]]:
        """Full rows, for reports and tests."""
        where, params = [], []
        if drill_id is not None:
            where.append("drill_id = %s")
            params.append(drill_id)
        if cold_bucket is not None:
            where.append("cold_bucket = %s")
            params.append(cold_bucket)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        with self.pool.connection() as conn:
            return conn.cursor(row_factory=dict_row).execute(
                f"SELECT * FROM vault_secure.restore_drills {clause} ORDER BY requested_at, id", params,
            ).fetchall()


def _item(row: dict[str, Any]) -> DrillItem:
    return DrillItem(
        id=row["id"], drill_id=str(row["drill_id"]), object_key=row["object_key"],
        cold_version_id=row["cold_version_id"], expected_sha256=row["expected_sha256"].strip(),
        expected_size=int(row["expected_size"]), tier=row["tier"], restore_days=int(row["restore_days"]),
        requested_at=row["requested_at"], state=row["state"], restore_required=row["restore_required"],
        restore_status=row["restore_status"], overdue=bool(row.get("overdue")),
    )

