-- The product specification's interface for vault_secure.replication_status: every column it names,
-- under its own name. Migrations 001-007 had given eight of them design names; they are renamed in place
-- (no copy, no row rewritten), so a database of any earlier version keeps every row. A fresh database
-- runs 001-007 then this file, the same path as an upgrade. Every statement is idempotent.
--
--   object_key -> s3_key                 source_bucket -> bucket_source    destination_bucket -> bucket_dest
--   cold_version_id -> aws_version_id    cold_etag -> aws_etag             retain_until -> aws_object_lock_until
--   source_etag -> ovh_etag              file_size -> ovh_size
--
-- Other tables (audit_logs, journal_entries, restore_drills) keep their own column names, and journal
-- entries already on the cold site keep their field names: those are not this table's interface.

DO $$
DECLARE
    renames CONSTANT TEXT[][] := ARRAY[
        ['object_key', 's3_key'], ['source_bucket', 'bucket_source'], ['destination_bucket', 'bucket_dest'],
        ['cold_version_id', 'aws_version_id'], ['cold_etag', 'aws_etag'],
        ['retain_until', 'aws_object_lock_until'], ['source_etag', 'ovh_etag'], ['file_size', 'ovh_size']];
    pair TEXT[];
BEGIN
    FOREACH pair SLICE 1 IN ARRAY renames LOOP
        IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'vault_secure'
                   AND table_name = 'replication_status' AND column_name = pair[1]) THEN
            EXECUTE format('ALTER TABLE vault_secure.replication_status RENAME COLUMN %I TO %I', pair[1], pair[2]);
        END IF;
    END LOOP;
    -- Constraint names follow their column (expressions follow the rename by themselves).
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'replication_status_file_size_check') THEN
        ALTER TABLE vault_secure.replication_status
            RENAME CONSTRAINT replication_status_file_size_check TO replication_status_ovh_size_check;
    END IF;
END
$$;

-- Specification columns the design did not have yet.
ALTER TABLE vault_secure.replication_status ADD COLUMN IF NOT EXISTS document_id UUID;  -- hot metadata document-id
ALTER TABLE vault_secure.replication_status ADD COLUMN IF NOT EXISTS user_id UUID;      -- hot metadata user-id
ALTER TABLE vault_secure.replication_status ADD COLUMN IF NOT EXISTS failed_at TIMESTAMPTZ;  -- last failure, kept until replicated

-- A row failed before this migration: its last failure is its last update (the closest fact the row holds).
UPDATE vault_secure.replication_status SET failed_at = updated_at WHERE status = 'failed' AND failed_at IS NULL;

-- The specification's indexes. The full status index replaces the partial one of 001 (it answers the same
-- queries, and the specification's dashboards count replicated rows too).
DROP INDEX IF EXISTS vault_secure.replication_status_status;
CREATE INDEX IF NOT EXISTS idx_replication_status_status ON vault_secure.replication_status (status);
CREATE INDEX IF NOT EXISTS idx_replication_status_user_id ON vault_secure.replication_status (user_id);
