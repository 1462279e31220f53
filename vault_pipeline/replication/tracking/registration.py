"""Discovery: a listing page diffed against the manifest; new keys and changed ETags become pending."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from vault_pipeline.replication.inventory import ListedObject
from vault_pipeline.replication.tracking.connection import TrackingConnection
from vault_pipeline.replication.tracking.records import RegisterResult

# register() in two statements. _DIFF_SQL finds which listed objects are new or have another ETag than
# their row; _UPSERT_SQL writes those only. INSERT ... ON CONFLICT DO UPDATE ... WHERE alone would lock,
# and so write, every conflicting row: every known object on every sweep.
# A listing page is a sorted run of keys, so the rows to compare it with are read as one index range scan
# from its first to its last key (`nearby`), four times cheaper than one index probe per key. That range
# can also hold many rows the listing lacks (objects deleted from the hot site): the scan stops after
# `cap` rows (twice the page), and a range that did not fit falls back to one probe per key (a LATERAL
# subquery with LIMIT 1 on the unique key, which no plan turns into a scan of the table). Only one of the
# two branches runs (a one-time filter). The diff is planned on each call, for the table's current size:
# a plan cached while the table was small would scan it whole.
_DIFF_SQL = """
    WITH listed AS MATERIALIZED (
        SELECT * FROM unnest(%(keys)b::text[], %(etags)b::text[]) WITH ORDINALITY
            AS listed (s3_key, ovh_etag, ordinal)
    ), nearby AS MATERIALIZED (
        SELECT known.s3_key, known.ovh_etag, known.hot_missing_at FROM vault_secure.replication_status AS known
        WHERE known.bucket_source = %(src)s
          AND known.s3_key BETWEEN (SELECT min(s3_key) FROM listed) AND (SELECT max(s3_key) FROM listed)
        LIMIT %(cap)s
    )
    SELECT listed.ordinal FROM listed LEFT JOIN nearby ON nearby.s3_key = listed.s3_key
    WHERE (SELECT count(*) FROM nearby) < %(cap)s
      AND (nearby.ovh_etag IS DISTINCT FROM listed.ovh_etag OR nearby.hot_missing_at IS NOT NULL)
    UNION ALL
    SELECT listed.ordinal FROM listed LEFT JOIN LATERAL (
        SELECT known.ovh_etag, known.hot_missing_at FROM vault_secure.replication_status AS known
        WHERE known.bucket_source = %(src)s AND known.s3_key = listed.s3_key
        LIMIT 1
    ) AS stored ON true
    WHERE (SELECT count(*) FROM nearby) >= %(cap)s
      AND (stored.ovh_etag IS DISTINCT FROM listed.ovh_etag OR stored.hot_missing_at IS NOT NULL)
"""
# The ON CONFLICT clause decides on each row's latest version, so a row written since the diff read it is
# handled as before. Rows in key order: concurrent registrations lock them in the same order.
# partition_day is the UTC day of LastModified, as ListedObject.partition_day.
_UPSERT_SQL = """
    INSERT INTO vault_secure.replication_status AS r
        (s3_key, bucket_source, bucket_dest, ovh_etag, ovh_size,
         source_last_modified, partition_day, status)
    SELECT s3_key, %(src)s, %(dst)s, ovh_etag, ovh_size, source_last_modified,
           (source_last_modified AT TIME ZONE 'UTC')::date, 'pending'
    FROM unnest(%(keys)b::text[], %(etags)b::text[], %(sizes)b::bigint[], %(modified)b::timestamptz[])
        AS listed (s3_key, ovh_etag, ovh_size, source_last_modified)
    ORDER BY s3_key
    ON CONFLICT (bucket_source, s3_key) DO UPDATE SET
        ovh_etag = EXCLUDED.ovh_etag,
        ovh_size = EXCLUDED.ovh_size,
        source_last_modified = EXCLUDED.source_last_modified,
        partition_day = EXCLUDED.partition_day,
        status = CASE WHEN r.status = 'in_progress' THEN r.status ELSE 'pending' END,
        retry_count = 0,
        error_message = NULL,
        hot_deleted_at = NULL,
        hot_missing_at = NULL,
        updated_at = now()
    -- a row whose hot object was found gone comes back when a listing finds the key again
    WHERE r.ovh_etag IS DISTINCT FROM EXCLUDED.ovh_etag OR r.hot_missing_at IS NOT NULL
    RETURNING partition_day, (xmax = 0) AS inserted
"""


class Registration(TrackingConnection):
    def register(
        self, objects: Iterable[ListedObject], *, source_bucket: str, destination_bucket: str
    ) -> RegisterResult:
        """Bulk diff of listed objects against the manifest: new keys and changed ETags become pending.

        One read-only diff per call (a listing page: keys and ETags sent as binary arrays), then one
        INSERT ... ON CONFLICT of the objects that are new or whose ETag changed, if any (see _DIFF_SQL):
        an unchanged row is read, never locked or written, so a sweep that finds nothing new writes nothing.
        A changed source of a row being copied keeps its in_progress status; the worker sees the new ETag
        when it records its result and leaves the row pending for the new content.
        """
        listed = list({obj.key: obj for obj in objects}.values())  # a key once (the last one listed)
        if not listed:
            return RegisterResult(new=0, changed=0, days={})
        with self.pool.connection() as conn, conn.transaction():
            ordinals = conn.execute(_DIFF_SQL, {
                "keys": [obj.key for obj in listed], "etags": [obj.etag for obj in listed],
                "src": source_bucket, "cap": 2 * len(listed) + 1,
            }, prepare=False).fetchall()
            differing = [listed[ordinal - 1] for (ordinal,) in ordinals]
            rows = conn.execute(_UPSERT_SQL, {
                "keys": [obj.key for obj in differing], "etags": [obj.etag for obj in differing],
                "sizes": [obj.size for obj in differing], "modified": [obj.last_modified for obj in differing],
                "src": source_bucket, "dst": destination_bucket,
            }).fetchall() if differing else []
        days: dict[dt.date, int] = {}
        new = 0
        for day, inserted in rows:
            days[day] = days.get(day, 0) + 1
            new += bool(inserted)
        return RegisterResult(new=new, changed=len(rows) - new, days=days)
