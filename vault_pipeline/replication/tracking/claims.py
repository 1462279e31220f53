"""Work claiming: rows move pending -> in_progress under a lease that the worker keeps renewing; a row
whose lease expired (its worker died) is claimable again."""

from __future__ import annotations

import datetime as dt

from vault_pipeline.replication.shards import Shard
from vault_pipeline.replication.tracking.connection import TrackingConnection
from vault_pipeline.replication.tracking.records import ClaimedRow

# Candidates are read in (partition_day, id) order from the partial index replication_status_work
# (migration 015: rows not replicated only), so a claim reads the few claimable rows of its days, not every
# row of them. Module constants: benchmarks/scalebench EXPLAINs CLAIM_SQL as is, tests the other two.
_CLAIM_TEMPLATE = """
    WITH candidates AS (
        SELECT id, status AS previous_status FROM vault_secure.replication_status
        WHERE bucket_source = %(src)s AND partition_day BETWEEN %(d0)s AND %(d1)s
          AND (status = 'pending'
               -- a failed row whose hot object is gone waits for a listing to find it again
               OR (status = 'failed' AND hot_missing_at IS NULL)
               OR (status = 'in_progress' AND lease_expires_at < now()))
          AND (last_attempt_at IS NULL OR last_attempt_at < %(since)s){slice}
        ORDER BY {order}
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    UPDATE vault_secure.replication_status r SET
        status = 'in_progress', lease_owner = %(owner)s,
        lease_expires_at = now() + make_interval(secs => %(lease)s),
        last_attempt_at = clock_timestamp(), updated_at = now()
    FROM candidates c
    WHERE r.id = c.id
    RETURNING r.id, r.s3_key, r.ovh_etag, r.ovh_size, r.source_last_modified,
              r.partition_day, r.retry_count, r.cold_upload_id, r.aws_version_id,
              c.previous_status = 'in_progress'
"""
# The whole day range, in index order: a run without a shard.
CLAIM_SQL = _CLAIM_TEMPLATE.format(slice="", order="partition_day, id")
# A shard's own slice, id % n = i, still in index order (a filter on the index's id column). Written as an
# inequality on purpose: PostgreSQL estimates an equality on an expression at 1/200 of the rows, expects a
# handful, and then reads the whole day through a bitmap and sorts it at every claim; an inequality it
# estimates at 1/3, near the slice's real 1/n, so it walks the work index in order and stops at LIMIT
# (vault_pipeline_tests/replication/test_shards.py EXPLAINs it).
SLICE_CLAIM_SQL = _CLAIM_TEMPLATE.format(slice="\n          AND abs(id %% %(shards)s - %(shard)s) < 1",
                                         order="partition_day, id")
# A shard whose slice is exhausted helps with the rest of the range from its end (the index read backwards):
# the other shards work from its start, so a helper takes what they would reach last and rarely meets them.
STEAL_CLAIM_SQL = _CLAIM_TEMPLATE.format(slice="", order="partition_day DESC, id DESC")


class Claims(TrackingConnection):
    def claim(
        self,
        *,
        owner: str,
        source_bucket: str,
        first_day: dt.date,
        last_day: dt.date,
        limit: int,
        lease_seconds: float,
        not_attempted_since: dt.datetime,
        own_slice: Shard | None = None,
        steal: bool = False,
    ) -> list[ClaimedRow]:
        """Claim up to `limit` rows of the day range that need work and were not tried since the given
        time (so a run never re-claims what it just failed): only those of `own_slice` when given; with
        `steal`, any of the range, from its end."""
        params: dict[str, object] = {"owner": owner, "lease": lease_seconds, "src": source_bucket, "d0": first_day,
                                     "d1": last_day, "limit": limit, "since": not_attempted_since}
        if own_slice is not None:
            if steal:
                raise ValueError("a claim takes either a shard's own slice or steals, not both")
            sql, params = SLICE_CLAIM_SQL, {**params, "shards": own_slice.count, "shard": own_slice.index}
        else:
            sql = STEAL_CLAIM_SQL if steal else CLAIM_SQL
        with self.pool.connection() as conn, conn.transaction():
            rows = conn.execute(sql, params).fetchall()
        return [ClaimedRow(*row) for row in rows]

    def renew_leases(self, owner: str, lease_seconds: float) -> int:
        with self.pool.connection() as conn, conn.transaction():
            cur = conn.execute(
                "UPDATE vault_secure.replication_status SET lease_expires_at = now() + make_interval(secs => %s)"
                " WHERE lease_owner = %s AND status = 'in_progress'",
                (lease_seconds, owner),
            )
            return cur.rowcount

    def release(self, owner: str) -> int:
        """Give back rows still held (a run stopping early) so the next run need not wait for the lease."""
        with self.pool.connection() as conn, conn.transaction():
            cur = conn.execute(
                "UPDATE vault_secure.replication_status SET status = 'pending', lease_owner = NULL,"
                " lease_expires_at = NULL, updated_at = now()"
                " WHERE lease_owner = %s AND status = 'in_progress'",
                (owner,),
            )
            return cur.rowcount

    def record_upload_id(self, row_id: int, owner: str, upload_id: str | None) -> bool:
        """Remember an open multipart upload and its owner before sending parts, so a crash can be cleaned
        up. False when `owner` no longer holds the row: it must abort the upload and stop."""
        with self.pool.connection() as conn, conn.transaction():
            cur = conn.execute(
                "UPDATE vault_secure.replication_status SET cold_upload_id = %s,"
                " cold_upload_owner = CASE WHEN %s::text IS NULL THEN NULL ELSE lease_owner END, updated_at = now()"
                " WHERE id = %s AND lease_owner = %s AND status = 'in_progress'",
                (upload_id, upload_id, row_id, owner),
            )
            return cur.rowcount == 1

    def confirm_lease(self, row_id: int, owner: str, lease_seconds: float) -> bool:
        """The fence right before an irreversible cold write (CompleteMultipartUpload): True, with the lease
        renewed, only while `owner` holds an unexpired lease on the row. Nobody can take the row over for
        the next `lease_seconds`, far longer than the write takes."""
        with self.pool.connection() as conn, conn.transaction():
            cur = conn.execute(
                "UPDATE vault_secure.replication_status SET lease_expires_at = now() + make_interval(secs => %s)"
                " WHERE id = %s AND lease_owner = %s AND status = 'in_progress' AND lease_expires_at > now()",
                (lease_seconds, row_id, owner),
            )
            return cur.rowcount == 1

    def live_uploads(self, cold_bucket: str, key: str, row_id: int) -> tuple[set[str], bool]:
        """What other rows writing the same cold key hold under an unexpired lease: the upload ids their
        owners recorded, and whether one of them has no upload id recorded yet (its owner may be between
        CreateMultipartUpload and recording it). A takeover leaves those uploads alone."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT cold_upload_id, cold_upload_owner = lease_owner FROM vault_secure.replication_status"
                " WHERE s3_key = %s AND status = 'in_progress' AND bucket_dest = %s AND id <> %s"
                " AND lease_expires_at > now()",
                (key, cold_bucket, row_id),
            ).fetchall()
        return {upload for upload, mine in rows if upload and mine}, any(upload is None for upload, _ in rows)
