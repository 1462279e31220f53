-- Issue 12 §5 and §8a. Every statement is idempotent.

-- Who created the open multipart upload recorded in cold_upload_id. A worker that takes over a row aborts
-- an upload only when its owner's lease has expired; a live owner's upload (another row writing the same
-- cold key) is left alone.
ALTER TABLE vault_secure.replication_status ADD COLUMN IF NOT EXISTS cold_upload_owner TEXT;

-- When a copy found the hot object gone (deleted after it was listed). The row is 'failed' with an error
-- saying so and is not claimed again until a listing finds the key again, which makes it 'pending'.
ALTER TABLE vault_secure.replication_status ADD COLUMN IF NOT EXISTS hot_missing_at TIMESTAMPTZ;

-- Rows being copied, by key: which live workers write a cold key (the takeover's abort decision).
CREATE INDEX IF NOT EXISTS replication_status_in_progress_key
    ON vault_secure.replication_status (s3_key) WHERE status = 'in_progress';
