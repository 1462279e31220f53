-- vault-pipeline alert state (issue 3), version 2.
-- One row per distinct failure key ("check:cold_copies:checksum:2026-11-23", "run:replication_job:2026-11-23").
-- A row is open while the failure lasts and resolved once it is fixed; the same key reopening starts a new
-- episode on the same row. The row also carries the delivery state of its latest notification, so an
-- alert whose webhook was down is sent on a later tick, and only once. Every statement is idempotent.

CREATE SCHEMA IF NOT EXISTS vault_secure;

CREATE TABLE IF NOT EXISTS vault_secure.alerts (
    alert_key            TEXT        PRIMARY KEY,
    kind                 TEXT        NOT NULL CHECK (kind IN ('check', 'run')),
    subject              TEXT        NOT NULL,   -- "cold_copies:checksum" (asset:check) or the job name
    partition_key        TEXT        NOT NULL,   -- a day, "first..last" for a ranged run, or "all"
    state                TEXT        NOT NULL CHECK (state IN ('open', 'resolved')),
    first_seen_at        TIMESTAMPTZ NOT NULL,   -- first failure of the current episode
    last_seen_at         TIMESTAMPTZ NOT NULL,   -- latest failure observed
    resolved_at          TIMESTAMPTZ,
    -- time of the newest observation applied: an older one arriving late (a sensor lagging behind
    -- another) never reopens or resolves the key
    last_event_at        TIMESTAMPTZ NOT NULL,
    occurrences          INTEGER     NOT NULL DEFAULT 1 CHECK (occurrences >= 1),  -- failures in this episode
    episodes             INTEGER     NOT NULL DEFAULT 1 CHECK (episodes >= 1),     -- times it opened
    last_run_id          TEXT,
    last_payload         JSONB       NOT NULL,   -- the notification of the current state, exactly as sent
    notification_seq     INTEGER     NOT NULL DEFAULT 1,  -- bumped by every transition
    delivery_state       TEXT        NOT NULL
                         CHECK (delivery_state IN ('pending', 'delivered', 'skipped')),  -- skipped: no webhook
    delivery_attempts    INTEGER     NOT NULL DEFAULT 0,
    delivery_lease_until TIMESTAMPTZ,            -- a process is sending it; others leave it alone until then
    last_delivery_error  TEXT,                   -- never contains the webhook URL
    delivered_at         TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS alerts_pending_delivery
    ON vault_secure.alerts (updated_at) WHERE delivery_state = 'pending';
CREATE INDEX IF NOT EXISTS alerts_open_subject
    ON vault_secure.alerts (kind, subject) WHERE state = 'open';

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vault_admin') THEN
        CREATE ROLE vault_admin NOLOGIN;
    END IF;
END
$$;

ALTER TABLE vault_secure.alerts ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS admin_all_alerts ON vault_secure.alerts;
CREATE POLICY admin_all_alerts ON vault_secure.alerts
    FOR ALL TO vault_admin USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON vault_secure.alerts TO vault_admin;
