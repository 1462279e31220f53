"""vault_secure.file_transfer_log: the SFTP intake's files, claimed by workers under leases.

A file is registered once it looked stable (same size and mtime twice), as PENDING. A worker claims files
with SELECT ... FOR UPDATE SKIP LOCKED, which makes them IN_PROGRESS under a lease it renews; a claim
whose lease ran out (its worker died: the reference design's stale lock, SFTP_STALE_LOCK_MINUTES) is
claimable again, so no file is transferred by two workers at once and none is left behind. A transfer
ends COMPLETED (with its hot object, SHA-256 and durations) or FAILED (with the reason; retried up to
`max_attempts`). A file delivered again under the same name (another size or mtime) becomes PENDING
again: a new delivery, never mistaken for the one already transferred.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row

from vault_pipeline.replication.tracking.connection import TrackingConnection

CLAIM_SQL = """
    WITH candidates AS (
        SELECT id FROM vault_secure.file_transfer_log
        WHERE inbox = %(inbox)s
          AND (status = 'PENDING'
               OR (status = 'IN_PROGRESS' AND lease_expires_at < now())
               OR (status = 'FAILED' AND retryable AND attempts < %(max_attempts)s
                   AND updated_at < now() - make_interval(secs => %(retry_after)s)))
        ORDER BY id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    UPDATE vault_secure.file_transfer_log f SET
        status = 'IN_PROGRESS', worker_id = %(owner)s, attempts = f.attempts + 1,
        lease_expires_at = now() + make_interval(secs => %(lease)s),
        transfer_start_time = clock_timestamp(), transfer_end_time = NULL, error_message = NULL,
        updated_at = now()
    FROM candidates c
    WHERE f.id = c.id
    RETURNING f.id, f.filename, f.file_size, f.source_mtime, f.attempts
"""


@dataclass(frozen=True)
class StableFile:
    """A file of the inbox as two looks saw it, unchanged."""

    filename: str
    size: int
    mtime: dt.datetime


@dataclass(frozen=True)
class ClaimedFile:
    id: int
    filename: str
    size: int
    mtime: dt.datetime
    attempts: int


@dataclass(frozen=True)
class TransferResult:
    hot_bucket: str
    hot_key: str
    hot_etag: str
    hot_version_id: str | None
    sha256: str
    document_type: str
    download_seconds: float
    upload_seconds: float
    total_seconds: float
    after_transfer: str  # moved | deleted | kept
    note: str | None = None  # kept in error_message: what went right but not as planned (e.g. a move refused)


def counts_by_status(conn: Any, inbox: str | None = None) -> dict[str, dict[str, int]]:
    """status -> files and bytes in the transfer log (of one inbox, or all)."""
    where, params = ("WHERE inbox = %s", [inbox]) if inbox else ("", [])
    return {status: {"files": int(n), "bytes": int(b)} for status, n, b in conn.execute(
        f"SELECT status, count(*), COALESCE(sum(file_size), 0) FROM vault_secure.file_transfer_log {where}"
        " GROUP BY status", params).fetchall()}


class TransferLog(TrackingConnection):
    def register_stable(self, inbox: str, files: Iterable[StableFile]) -> int:
        """Record stable files as PENDING; a known name with another size or mtime is a new delivery and
        becomes PENDING again (its previous result is overwritten in this row, the audit keeps it). Files
        already known with the same look are left alone. Returns how many rows became PENDING."""
        rows = [(inbox, f.filename, f.size, f.mtime) for f in files]
        if not rows:
            return 0
        with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor()
            cur.executemany(
                """
                INSERT INTO vault_secure.file_transfer_log (inbox, filename, file_size, source_mtime, file_size_mb)
                VALUES (%s, %s, %s, %s, round(%s::numeric / 1048576, 3))
                ON CONFLICT (inbox, filename) DO UPDATE SET
                    file_size = EXCLUDED.file_size, source_mtime = EXCLUDED.source_mtime,
                    file_size_mb = EXCLUDED.file_size_mb, status = 'PENDING', attempts = 0, worker_id = NULL,
                    lease_expires_at = NULL, error_message = NULL, hot_key = NULL, hot_etag = NULL,
                    hot_version_id = NULL, sha256 = NULL, after_transfer = NULL, transfer_start_time = NULL,
                    transfer_end_time = NULL, download_duration = NULL, upload_duration = NULL,
                    total_duration = NULL, updated_at = now()
                WHERE (vault_secure.file_transfer_log.file_size, vault_secure.file_transfer_log.source_mtime)
                      IS DISTINCT FROM (EXCLUDED.file_size, EXCLUDED.source_mtime)
                """,
                [(i, name, size, mtime, size) for i, name, size, mtime in rows],
                returning=False,
            )
            return cur.rowcount if cur.rowcount >= 0 else 0

    def claim_files(self, inbox: str, *, owner: str, limit: int, lease_seconds: float,
                    max_attempts: int = 3, retry_after_seconds: float = 0.0,
                    max_bytes: int | None = None) -> list[ClaimedFile]:
        """Up to `limit` files for `owner`, in id order: PENDING ones, those whose lease ran out, and FAILED ones
        that may be retried (retryable, fewer than `max_attempts` attempts, the last one `retry_after_seconds`
        ago). With `max_bytes`, the files after the first stop where their sizes add up to more: a worker takes
        many small files at once, never several large ones that other workers could be transferring."""
        with self.pool.connection() as conn, conn.transaction():
            rows = sorted(conn.execute(CLAIM_SQL, {
                "inbox": inbox, "owner": owner, "limit": limit, "lease": lease_seconds, "max_attempts": max_attempts,
                "retry_after": retry_after_seconds}).fetchall())
            claimed = [ClaimedFile(*row) for row in rows]
            if max_bytes is not None and len(claimed) > 1:
                kept, total = 1, claimed[0].size
                while kept < len(claimed) and total + claimed[kept].size <= max_bytes:
                    total += claimed[kept].size
                    kept += 1
                if kept < len(claimed):
                    conn.execute(
                        "UPDATE vault_secure.file_transfer_log SET status = 'PENDING', worker_id = NULL,"
                        " attempts = greatest(attempts - 1, 0), lease_expires_at = NULL, transfer_start_time = NULL"
                        " WHERE id = ANY(%s) AND worker_id = %s", ([f.id for f in claimed[kept:]], owner))
                    claimed = claimed[:kept]
        return claimed

    def renew_file_leases(self, owner: str, lease_seconds: float) -> int:
        with self.pool.connection() as conn, conn.transaction():
            return conn.execute(
                "UPDATE vault_secure.file_transfer_log SET lease_expires_at = now() + make_interval(secs => %s)"
                " WHERE worker_id = %s AND status = 'IN_PROGRESS'", (lease_seconds, owner)).rowcount

    def complete_file(self, file_id: int, owner: str, result: TransferResult) -> bool:
        """COMPLETED with its hot object; False when `owner` no longer holds the file (its lease ran out and
        another worker took it over: that worker records the result)."""
        with self.pool.connection() as conn, conn.transaction():
            return conn.execute(
                """
                UPDATE vault_secure.file_transfer_log SET status = 'COMPLETED', transfer_end_time = clock_timestamp(),
                    hot_bucket = %s, hot_key = %s, hot_etag = %s, hot_version_id = %s, sha256 = %s,
                    document_type = %s, download_duration = %s, upload_duration = %s, total_duration = %s,
                    after_transfer = %s, lease_expires_at = NULL, error_message = %s, updated_at = now()
                WHERE id = %s AND worker_id = %s AND status = 'IN_PROGRESS'
                """,
                (result.hot_bucket, result.hot_key, result.hot_etag, result.hot_version_id, result.sha256,
                 result.document_type, result.download_seconds, result.upload_seconds, result.total_seconds,
                 result.after_transfer, result.note, file_id, owner)).rowcount == 1

    def complete_files(self, done: list[tuple[int, str, TransferResult, dt.datetime]]) -> set[int]:
        """complete_file for many files in one statement: (id, owner, result, end time). Returns the ids
        recorded; a file whose lease passed to another worker is not (that worker records it)."""
        if not done:
            return set()
        columns = list(zip(*[
            (file_id, owner, end - dt.timedelta(seconds=r.total_seconds), end, r.hot_bucket, r.hot_key, r.hot_etag,
             r.hot_version_id, r.sha256, r.document_type, r.download_seconds, r.upload_seconds, r.total_seconds,
             r.after_transfer, r.note) for file_id, owner, r, end in done], strict=True))
        with self.pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                """
                UPDATE vault_secure.file_transfer_log f SET status = 'COMPLETED', transfer_start_time = v.started,
                    transfer_end_time = v.ended, hot_bucket = v.hot_bucket, hot_key = v.hot_key,
                    hot_etag = v.hot_etag, hot_version_id = v.hot_version_id, sha256 = v.sha256,
                    document_type = v.document_type, download_duration = v.download, upload_duration = v.upload,
                    total_duration = v.total, after_transfer = v.after_transfer, lease_expires_at = NULL,
                    error_message = v.note, updated_at = now()
                FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::text[], %s::text[],
                            %s::text[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::float8[],
                            %s::float8[], %s::text[], %s::text[])
                     AS v(id, owner, started, ended, hot_bucket, hot_key, hot_etag, hot_version_id, sha256,
                          document_type, download, upload, total, after_transfer, note)
                WHERE f.id = v.id AND f.worker_id = v.owner AND f.status = 'IN_PROGRESS'
                RETURNING f.id
                """, [list(c) for c in columns]).fetchall()
        return {row[0] for row in rows}

    def fail_file(self, file_id: int, owner: str, error: str, *, total_seconds: float | None = None,
                  retryable: bool = True) -> bool:
        """FAILED with the reason. Not `retryable` (a symlink, a file that vanished or changed): no later attempt
        of this delivery; a new delivery under the same name (another size or mtime) is registered afresh."""
        with self.pool.connection() as conn, conn.transaction():
            return conn.execute(
                "UPDATE vault_secure.file_transfer_log SET status = 'FAILED', error_message = %s, retryable = %s,"
                " transfer_end_time = clock_timestamp(), total_duration = %s, lease_expires_at = NULL,"
                " updated_at = now() WHERE id = %s AND worker_id = %s AND status = 'IN_PROGRESS'",
                (error[:4000], retryable, total_seconds, file_id, owner)).rowcount == 1

    def refuse_files(self, inbox: str, refused: Iterable[tuple[str, int, dt.datetime, str]]) -> int:
        """Record entries the intake will not transfer (a symlink, a socket...) as FAILED, not retryable, with
        the reason, once per look: (filename, size, mtime, reason)."""
        rows = list(refused)
        if not rows:
            return 0
        with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor()
            cur.executemany(
                """
                INSERT INTO vault_secure.file_transfer_log (inbox, filename, file_size, source_mtime, file_size_mb,
                                                           status, error_message, retryable, transfer_end_time)
                VALUES (%s, %s, %s, %s, round(%s::numeric / 1048576, 3), 'FAILED', %s, false, now())
                ON CONFLICT (inbox, filename) DO UPDATE SET
                    file_size = EXCLUDED.file_size, source_mtime = EXCLUDED.source_mtime, status = 'FAILED',
                    error_message = EXCLUDED.error_message, retryable = false, updated_at = now()
                WHERE (vault_secure.file_transfer_log.file_size, vault_secure.file_transfer_log.source_mtime)
                      IS DISTINCT FROM (EXCLUDED.file_size, EXCLUDED.source_mtime)
                """,
                [(inbox, name, size, mtime, size, reason[:4000]) for name, size, mtime, reason in rows],
                returning=False,
            )
            return cur.rowcount if cur.rowcount >= 0 else 0

    def known_looks(self, inbox: str, filenames: list[str]) -> dict[str, tuple[int, dt.datetime]]:
        """The (size, mtime) the log holds for these names: a file listed again with the same look is a
        delivery already registered, and the inbox sensor leaves it alone."""
        if not filenames:
            return {}
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT filename, file_size, source_mtime FROM vault_secure.file_transfer_log"
                " WHERE inbox = %s AND filename = ANY(%s)", (inbox, filenames)).fetchall()
        return {name: (int(size), mtime) for name, size, mtime in rows}

    def claimable_files(self, inbox: str, *, max_attempts: int, retry_after_seconds: float) -> int:
        """How many files a transfer run would claim now (the inbox sensor requests a run when there are)."""
        with self.pool.connection() as conn:
            return int(conn.execute(
                "SELECT count(*) FROM vault_secure.file_transfer_log WHERE inbox = %s AND (status = 'PENDING'"
                " OR (status = 'IN_PROGRESS' AND lease_expires_at < now()) OR (status = 'FAILED' AND retryable"
                " AND attempts < %s AND updated_at < now() - make_interval(secs => %s)))",
                (inbox, max_attempts, retry_after_seconds)).fetchone()[0])

    def release_files(self, owner: str) -> int:
        """Give back files claimed and never started (a run stopping early)."""
        with self.pool.connection() as conn, conn.transaction():
            return conn.execute(
                "UPDATE vault_secure.file_transfer_log SET status = 'PENDING', worker_id = NULL,"
                " attempts = greatest(attempts - 1, 0), lease_expires_at = NULL, transfer_start_time = NULL,"
                " updated_at = now() WHERE worker_id = %s AND status = 'IN_PROGRESS'", (owner,)).rowcount

    def transfer_summary(self, inbox: str | None = None) -> dict[str, Any]:
        """Counts and bytes by status, and the last day's throughput, for `vault-pipeline status`."""
        params = [inbox] if inbox else []
        with self.pool.connection() as conn:
            by_status = counts_by_status(conn, inbox)
            recent = conn.cursor(row_factory=dict_row).execute(
                "SELECT count(*) AS files, COALESCE(sum(file_size), 0) AS bytes,"
                " COALESCE(sum(download_duration), 0) AS download_s, COALESCE(sum(upload_duration), 0) AS upload_s"
                " FROM vault_secure.file_transfer_log WHERE status = 'COMPLETED'"
                " AND transfer_end_time > now() - interval '24 hours'"
                + (" AND inbox = %s" if inbox else ""), params).fetchone()
        return {"by_status": by_status, "last_24h": recent}

    # -- the inbox sensor's looks at files still settling (intake/sftp_inbox.py) -----------------------------
    def previous_looks(self, inbox: str, filenames: list[str]) -> dict[str, tuple[int, dt.datetime, dt.datetime]]:
        """filename -> (size, mtime, first seen) of the looks kept for these names."""
        if not filenames:
            return {}
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT filename, file_size, source_mtime, first_seen FROM vault_secure.sftp_inbox_looks"
                " WHERE inbox = %s AND filename = ANY(%s)", (inbox, filenames)).fetchall()
        return {name: (int(size), mtime, first) for name, size, mtime, first in rows}

    def save_looks(self, inbox: str, looks: dict[str, tuple[int, dt.datetime, dt.datetime]], forget: list[str],
                   now: dt.datetime) -> None:
        """Keep the looks of files still settling (filename -> size, mtime, first seen); drop `forget` (files
        registered, or refused)."""
        with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor()
            if looks:
                cur.executemany(
                    "INSERT INTO vault_secure.sftp_inbox_looks (inbox, filename, file_size, source_mtime, first_seen,"
                    " last_seen) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (inbox, filename) DO UPDATE SET"
                    " file_size = EXCLUDED.file_size, source_mtime = EXCLUDED.source_mtime,"
                    " first_seen = EXCLUDED.first_seen, last_seen = EXCLUDED.last_seen",
                    [(inbox, name, size, mtime, first, now) for name, (size, mtime, first) in looks.items()])
            if forget:
                cur.execute("DELETE FROM vault_secure.sftp_inbox_looks WHERE inbox = %s AND filename = ANY(%s)",
                            (inbox, forget))

    def forget_looks_before(self, inbox: str, before: dt.datetime) -> int:
        """Looks a whole listing pass did not see again: files removed before they settled."""
        with self.pool.connection() as conn, conn.transaction():
            return conn.execute("DELETE FROM vault_secure.sftp_inbox_looks WHERE inbox = %s AND last_seen < %s",
                                (inbox, before)).rowcount

    # -- what the checks on sftp_transfers read ------------------------------------------------------------
    def failed_files(self, inbox: str, limit: int = 50) -> tuple[int, list[tuple[str, str, bool, int]]]:
        """(how many FAILED, the first `limit`: filename, error, retryable, attempts)."""
        with self.pool.connection() as conn:
            total = int(conn.execute("SELECT count(*) FROM vault_secure.file_transfer_log WHERE inbox = %s"
                                     " AND status = 'FAILED'", (inbox,)).fetchone()[0])
            rows = conn.execute(
                "SELECT filename, COALESCE(error_message, ''), retryable, attempts FROM vault_secure.file_transfer_log"
                " WHERE inbox = %s AND status = 'FAILED' ORDER BY updated_at DESC LIMIT %s", (inbox, limit)).fetchall()
        return total, [(name, error, bool(retry), int(attempts)) for name, error, retry, attempts in rows]

    def intake_hashes_against_copies(self, inbox: str, since: dt.datetime, until: dt.datetime,
                                     limit: int = 50) -> tuple[int, list[tuple[str, str, str]]]:
        """Files transferred in [since, until) whose hot object is replicated: how many were compared, and those
        whose cold copy's SHA-256 differs from the one taken at intake (key, intake hash, cold hash). Compared
        only for the same hot object (ETag): a newer delivery of the name is compared once it is copied."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                """
                SELECT f.hot_key, f.sha256, r.sha256
                FROM vault_secure.file_transfer_log f
                JOIN vault_secure.replication_status r
                  ON r.bucket_source = f.hot_bucket AND r.s3_key = f.hot_key AND r.ovh_etag = f.hot_etag
                WHERE f.inbox = %s AND f.status = 'COMPLETED' AND f.transfer_end_time >= %s
                  AND f.transfer_end_time < %s AND r.status = 'replicated'
                """, (inbox, since, until)).fetchall()
        mismatches = [(key, intake, cold) for key, intake, cold in rows if (cold or "").strip() != intake]
        return len(rows), mismatches[:limit]
