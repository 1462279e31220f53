"""Read-only questions about the manifest: counts, backlogs, failures, days to verify; and the record of
a verification."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from psycopg.rows import dict_row

from vault_pipeline.replication.tracking.connection import TrackingConnection

# The sensor's questions, asked on every tick. Both are index-only scans of the small partial index
# replication_status_work (migration 015: only rows that are not replicated, with every column these read),
# however many replicated rows the table holds. Module constants: benchmarks/scalebench EXPLAINs them as is.
# The "latest" of a day names its work in the sensor's run_key: the newest change of a pending row, or the
# expiry of a lease that ran out (its worker died). A lease expiring thus changes the key, and the day
# gets a new run, even when nothing else changed since the dead run was requested.
DAYS_NEEDING_RUNS_SQL = """
    SELECT partition_day, count(*),
           max(CASE WHEN status = 'in_progress' THEN lease_expires_at ELSE updated_at END)
    FROM vault_secure.replication_status
    WHERE bucket_source = %s
      AND (status = 'pending' OR (status = 'in_progress' AND lease_expires_at < now()))
    GROUP BY partition_day ORDER BY partition_day
"""
PENDING_COUNT_SQL = (
    "SELECT count(*) FROM vault_secure.replication_status WHERE bucket_source = %s"
    " AND status IN ('pending', 'in_progress')"
)


def status_counts_query(source_bucket: str, first_day: dt.date | None,
                        last_day: dt.date | None) -> tuple[str, list[Any]]:
    """status_counts' statement and parameters: by day range, an index-only scan of replication_status_day
    (migration 015, which carries ovh_size)."""
    where, params = "bucket_source = %s", [source_bucket]
    if first_day is not None and last_day is not None:
        where += " AND partition_day BETWEEN %s AND %s"
        params += [first_day, last_day]
    return (f"SELECT status, count(*), COALESCE(sum(ovh_size), 0) FROM vault_secure.replication_status"
            f" WHERE {where} GROUP BY status", params)


class Reports(TrackingConnection):
    def status_counts(
        self, *, source_bucket: str, first_day: dt.date | None = None, last_day: dt.date | None = None
    ) -> dict[str, dict[str, int]]:
        query, params = status_counts_query(source_bucket, first_day, last_day)
        with self.pool.connection() as conn:
            rows = conn.execute(query, params).fetchall()
        return {status: {"objects": int(n), "bytes": int(b)} for status, n, b in rows}

    def days_needing_runs(self, source_bucket: str) -> list[tuple[dt.date, int, dt.datetime]]:
        """(day, rows, latest) of the days with rows waiting for a copy (pending, or held by a worker whose
        lease expired); latest: the newest change of a pending row or lease expiry among them."""
        with self.pool.connection() as conn:
            return [(day, int(n), latest) for day, n, latest in conn.execute(
                DAYS_NEEDING_RUNS_SQL, (source_bucket,)).fetchall()]

    def pending_count(self, source_bucket: str) -> int:
        with self.pool.connection() as conn:
            return int(conn.execute(PENDING_COUNT_SQL, (source_bucket,)).fetchone()[0])

    def failures(self, *, source_bucket: str, first_day: dt.date, last_day: dt.date,
                 limit: int = 50) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return conn.cursor(row_factory=dict_row).execute(
                "SELECT s3_key, retry_count, error_message, updated_at FROM vault_secure.replication_status"
                " WHERE bucket_source = %s AND partition_day BETWEEN %s AND %s AND status = 'failed'"
                " ORDER BY s3_key LIMIT %s",
                (source_bucket, first_day, last_day, limit),
            ).fetchall()

    def rows_for_days(self, source_bucket: str, first_day: dt.date, last_day: dt.date) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return conn.cursor(row_factory=dict_row).execute(
                "SELECT * FROM vault_secure.replication_status WHERE bucket_source = %s"
                " AND partition_day BETWEEN %s AND %s ORDER BY s3_key",
                (source_bucket, first_day, last_day),
            ).fetchall()

    def record_verification(self, *, day: dt.date, run_id: str | None, objects: int, ok: int,
                            counts: dict[str, int], report_key: str | None, report_version_id: str | None) -> None:
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO vault_secure.verification_reports (partition_day, run_id, objects, ok, counts,"
                " report_key, report_version_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (day, run_id, objects, ok, json.dumps(counts), report_key, report_version_id),
            )

    def days_by_last_verification(self, source_bucket: str) -> list[tuple[dt.date, dt.datetime | None]]:
        """Every day with documents, least recently verified first (never verified first of all)."""
        with self.pool.connection() as conn:
            return conn.execute(
                """
                SELECT d.partition_day, max(v.verified_at) AS last
                FROM (SELECT DISTINCT partition_day FROM vault_secure.replication_status
                      WHERE bucket_source = %s) d
                LEFT JOIN vault_secure.verification_reports v ON v.partition_day = d.partition_day
                GROUP BY d.partition_day ORDER BY last NULLS FIRST, d.partition_day
                """,
                (source_bucket,),
            ).fetchall()

    def cold_totals(self, source_bucket: str) -> tuple[int, int]:
        with self.pool.connection() as conn:
            n, total = conn.execute(
                "SELECT count(*), COALESCE(sum(ovh_size), 0) FROM vault_secure.replication_status"
                " WHERE bucket_source = %s AND status = 'replicated'",
                (source_bucket,),
            ).fetchone()
        return int(n), int(total)

    def known_keys(self, destination_bucket: str) -> set[str]:
        """Every key the manifest has for a cold bucket (the orphan sweep's reference)."""
        with self.pool.connection() as conn:
            return {r[0] for r in conn.execute(
                "SELECT s3_key FROM vault_secure.replication_status WHERE bucket_dest = %s",
                (destination_bucket,),
            )}

    def rows(self, source_bucket: str, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Full rows, for inspection and tests."""
        with self.pool.connection() as conn:
            if keys is None:
                return conn.cursor(row_factory=dict_row).execute(
                    "SELECT * FROM vault_secure.replication_status WHERE bucket_source = %s ORDER BY s3_key",
                    (source_bucket,),
                ).fetchall()
            return conn.cursor(row_factory=dict_row).execute(
                "SELECT * FROM vault_secure.replication_status WHERE bucket_source = %s"
                " AND s3_key = ANY(%s) ORDER BY s3_key",
                (source_bucket, list(keys)),
            ).fetchall()
