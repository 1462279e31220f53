-- Completion webhooks (issue 17, item 4): a signed JSON notice to each configured endpoint when a day's
-- replication, a backup or a restore is complete. Separate from the failure alerts (vault_secure.alerts).
-- One row per (notice, endpoint): the primary key makes "the same completion enqueued twice" (a retried run,
-- two sensors) one delivery, and each endpoint has its own delivery state. `endpoint` is a fingerprint of the
-- URL (the first 16 hex digits of its SHA-256), never the URL: the URL is a secret that may carry a token.
-- Delivery is at least once: a row is claimed with a short lease (FOR UPDATE SKIP LOCKED), POSTed, then marked
-- delivered, or retried later with backoff, or abandoned after the maximum number of attempts.
-- Every statement is idempotent.

CREATE TABLE IF NOT EXISTS vault_secure.completion_notices (
    idempotency_key  TEXT        NOT NULL,   -- derived from (event, subject); also in the body and a header
    endpoint         TEXT        NOT NULL CHECK (endpoint ~ '^[0-9a-f]{16}$'),
    event            TEXT        NOT NULL
                     CHECK (event IN ('replication_day_complete', 'backup_complete', 'restore_complete')),
    subject          TEXT        NOT NULL,   -- the day (with its object count and last verification), the
                                             -- backup id, the restore's root run id
    payload          JSONB       NOT NULL,   -- the notice as signed and sent (sent_at is set at each attempt)
    status           TEXT        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'abandoned')),
    attempts         INTEGER     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_attempt_at  TIMESTAMPTZ,
    last_status      INTEGER,                -- the last HTTP status received (NULL: no answer)
    last_error       TEXT,                   -- never contains the URL
    lease_owner      TEXT,                   -- the process sending it now; others leave it alone until
    lease_expires_at TIMESTAMPTZ,            -- its lease expires (then it is sent again: at least once)
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at     TIMESTAMPTZ,
    PRIMARY KEY (idempotency_key, endpoint)
);

CREATE INDEX IF NOT EXISTS completion_notices_due
    ON vault_secure.completion_notices (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS completion_notices_event_status
    ON vault_secure.completion_notices (event, status);

ALTER TABLE vault_secure.completion_notices ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS admin_all_completion_notices ON vault_secure.completion_notices;
CREATE POLICY admin_all_completion_notices ON vault_secure.completion_notices
    FOR ALL TO vault_admin USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON vault_secure.completion_notices TO vault_admin;
