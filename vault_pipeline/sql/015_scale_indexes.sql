-- Issue 14: the tracking database at 100M documents. The hot paths stay index-only scans whatever the
-- table's size (checked with EXPLAIN on 10M rows by benchmarks/scalebench/database.py). Every statement is
-- idempotent. On a large existing table each CREATE INDEX holds a write lock while it builds (migrations
-- run in one transaction): run it in a quiet window.

-- Rows that still need work: claims (claims.py CLAIM_SQL, in (partition_day, id) order), the sensor's
-- days_needing_runs and pending_count (reports.py). Partial: replicated rows, ~all of the table, are not in
-- it, so it stays as small as the backlog; INCLUDE carries every column those statements test, so the
-- sensor's questions never read the table.
CREATE INDEX IF NOT EXISTS replication_status_work
    ON vault_secure.replication_status (bucket_source, partition_day, id)
    INCLUDE (status, updated_at, lease_expires_at, last_attempt_at, hot_missing_at)
    WHERE status IN ('pending', 'in_progress', 'failed');

-- status_counts of a day range (each replication run, twice) and the verification schedule's days:
-- index-only with ovh_size carried. It replaces replication_status_day_status (partition_day, status) of
-- 001, which could not answer for one hot bucket without reading the table.
CREATE INDEX IF NOT EXISTS replication_status_day
    ON vault_secure.replication_status (bucket_source, partition_day, status) INCLUDE (ovh_size);
DROP INDEX IF EXISTS vault_secure.replication_status_day_status;

-- The registration diff (registration.py _DIFF_SQL) compares a listing page with the rows of its key range:
-- it reads s3_key, ovh_etag and hot_missing_at. The unique key's own index carries the last two, so the
-- sweep's common case (every key known, nothing changed) reads ~20 index pages per 1000 keys instead of
-- ~1000 scattered table pages. The constraint keeps its name and meaning (ON CONFLICT (bucket_source,
-- s3_key) infers it as before); only its index changes.
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_constraint c JOIN pg_index i ON i.indexrelid = c.conindid
        WHERE c.conname = 'replication_status_key' AND c.conrelid = 'vault_secure.replication_status'::regclass
          AND i.indnatts = i.indnkeyatts  -- no INCLUDE columns yet
    ) THEN
        CREATE UNIQUE INDEX IF NOT EXISTS replication_status_key_covering
            ON vault_secure.replication_status (bucket_source, s3_key) INCLUDE (ovh_etag, hot_missing_at);
        ALTER TABLE vault_secure.replication_status DROP CONSTRAINT replication_status_key,
            ADD CONSTRAINT replication_status_key UNIQUE USING INDEX replication_status_key_covering;
    END IF;
END
$$;
