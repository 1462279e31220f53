"""What the application's documents table says of registered rows (the app-table change feed,
014_announced_documents.sql), and which announced keys the manifest already holds.

The application's document_id and user_id fill the specification's columns only where the row has none
(the hot object's metadata, read by the copier, is the reference); its document type is kept as
announced_document_type beside the policy's own columns. An unchanged announcement writes nothing, so a
re-read of the same rows costs one read-only statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vault_pipeline.replication.tracking.connection import TrackingConnection

# One probe of the unique index (bucket_source, s3_key) per key: the keys of an application table come in
# its cursor's order, not in key order, so registration's range scan (registration.py) would not help. The
# LATERAL ... LIMIT 1 keeps the plan a loop of probes: a join would hash the whole table (1 s per 10,000
# keys at 1M rows, against 0.05 s). Keys are sent sorted, so consecutive probes hit the same index pages.
_REGISTERED_SQL = """
    SELECT announced.s3_key FROM unnest(%(keys)b::text[]) AS announced (s3_key)
    CROSS JOIN LATERAL (
        SELECT 1 FROM vault_secure.replication_status AS known
        WHERE known.bucket_source = %(src)s AND known.s3_key = announced.s3_key AND known.hot_missing_at IS NULL
        LIMIT 1
    ) AS registered
"""

# The announced rows drive a loop of index probes (hash and merge joins are switched off for the
# statement: either would read the whole table), in key order, so rows are locked in key order as
# registration locks them and two writers never deadlock. Rows whose values are already there are neither
# locked nor written.
_ANNOUNCE_SQL = """
    UPDATE vault_secure.replication_status AS r SET
        document_id = COALESCE(r.document_id, a.document_id),
        user_id = COALESCE(r.user_id, a.user_id),
        announced_document_type = COALESCE(a.document_type, r.announced_document_type)
    FROM unnest(%(keys)b::text[], %(docids)b::uuid[], %(userids)b::uuid[], %(types)b::text[])
        AS a (s3_key, document_id, user_id, document_type)
    WHERE r.bucket_source = %(src)s AND r.s3_key = a.s3_key
      AND ((r.document_id IS NULL AND a.document_id IS NOT NULL)
           OR (r.user_id IS NULL AND a.user_id IS NOT NULL)
           OR (a.document_type IS NOT NULL AND r.announced_document_type IS DISTINCT FROM a.document_type))
"""


@dataclass(frozen=True)
class Announcement:
    """One row of the application's table: identifiers already checked to be UUIDs (or None)."""

    key: str
    document_id: str | None = None
    user_id: str | None = None
    document_type: str | None = None

    @property
    def says_something(self) -> bool:
        return any(v is not None for v in (self.document_id, self.user_id, self.document_type))


class Announcements(TrackingConnection):
    def registered_keys(self, bucket: str, keys: Sequence[str]) -> set[str]:
        """The keys of `keys` that have a row in `bucket` whose hot object is not known to be missing: an
        earlier read or the sweep registered them, so a feed need not read them from the hot site again."""
        if not keys:
            return set()
        with self.pool.connection() as conn:
            rows = conn.execute(_REGISTERED_SQL, {"keys": sorted(set(keys)), "src": bucket}, prepare=False).fetchall()
        return {key for (key,) in rows}

    def record_announcements(self, bucket: str, rows: Iterable[Announcement]) -> int:
        """Store what the application says of registered rows; returns how many rows changed. Keys without
        a row are ignored (not registered: gone from the hot site, or refused); the last value of a key
        wins."""
        latest = {row.key: row for row in rows if row.says_something}
        if not latest:
            return 0
        values = sorted(latest.values(), key=lambda a: a.key)
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SET LOCAL enable_hashjoin = off")
            conn.execute("SET LOCAL enable_mergejoin = off")
            cursor = conn.execute(_ANNOUNCE_SQL, {
                "keys": [a.key for a in values], "docids": [a.document_id for a in values],
                "userids": [a.user_id for a in values], "types": [a.document_type for a in values],
                "src": bucket,
            }, prepare=False)
            return cursor.rowcount
