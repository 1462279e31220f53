"""Hot deletion's side of the manifest: which rows may go, and the record that one went."""

from __future__ import annotations

import datetime as dt
from typing import Any

from psycopg.rows import dict_row

from vault_pipeline.journal import outbox as journal
from vault_pipeline.journal.entries import hot_delete_fields
from vault_pipeline.replication.shards import Shard
from vault_pipeline.replication.tracking.connection import TrackingConnection


class HotDeletion(TrackingConnection):
    def deletable_rows(
        self, *, source_bucket: str, first_day: dt.date, last_day: dt.date, limit: int = 1000,
        shard: Shard | None = None,
    ) -> list[dict[str, Any]]:
        """Verified rows whose hot object is still there; with `shard`, only those of its slice (a shard run
        deletes only what its own blocking checks audited)."""
        count, index = (shard.count, shard.index) if shard else (1, 0)
        with self.pool.connection() as conn:
            return conn.cursor(row_factory=dict_row).execute(
                """
                SELECT id, s3_key, ovh_etag, sha256, aws_version_id, source_version_id
                FROM vault_secure.replication_status
                WHERE bucket_source = %s AND partition_day BETWEEN %s AND %s AND status = 'replicated'
                  AND verified_at IS NOT NULL AND hot_deleted_at IS NULL AND id %% %s = %s
                ORDER BY id LIMIT %s
                """,
                (source_bucket, first_day, last_day, count, index, limit),
            ).fetchall()

    def mark_hot_deleted(self, row_id: int, key: str, source_bucket: str, run_id: str | None,
                         details: dict[str, Any]) -> None:
        with self.pool.connection() as conn, conn.transaction():
            deleted = conn.cursor(row_factory=dict_row).execute(
                "UPDATE vault_secure.replication_status SET hot_deleted_at = now(), updated_at = now()"
                " WHERE id = %s RETURNING *",
                (row_id,),
            ).fetchone()
            if deleted is not None:
                journal.enqueue(conn, hot_delete_fields(deleted, run_id=run_id))
            self._audit(conn, "HOT_DELETED", key, run_id, details, bucket=source_bucket)
