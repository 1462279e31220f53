-- vault-pipeline: restore drills (issue 3).
-- Verification from metadata proves a cold copy was written right; only reading the bytes back proves
-- it can be recovered. A drill samples replicated objects, restores them from Deep Archive (12-48 h,
-- so it is a durable two-phase process that spans runs), re-hashes them and records the result here.
-- One row per sampled object version. Every statement is idempotent.

CREATE TABLE IF NOT EXISTS vault_secure.restore_drills (
    id               BIGSERIAL PRIMARY KEY,
    drill_id         UUID        NOT NULL,              -- one weekly drill = one sample
    run_id           TEXT,                              -- Dagster run that took the sample
    source_bucket    TEXT        NOT NULL,
    cold_bucket      TEXT        NOT NULL,
    object_key       TEXT        NOT NULL,
    cold_version_id  TEXT        NOT NULL,              -- the exact locked version drilled
    expected_sha256  CHAR(64)    NOT NULL,              -- the manifest's value when sampled
    expected_size    BIGINT      NOT NULL CHECK (expected_size >= 0),
    tier             TEXT        NOT NULL CHECK (tier IN ('Bulk', 'Standard', 'Expedited')),
    restore_days     INTEGER     NOT NULL CHECK (restore_days BETWEEN 1 AND 30),
    requested_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- requested / restored / not_needed are pending (the bytes are still to be read);
    -- verified / mismatch / failed are final.
    state            TEXT        NOT NULL DEFAULT 'requested'
                     CHECK (state IN ('requested', 'restored', 'verified', 'mismatch', 'failed', 'not_needed')),
    restore_required BOOLEAN,                           -- false: the server served the bytes without a restore
    restore_status   TEXT,                              -- last x-amz-restore value or why no restore was made
    restored_at      TIMESTAMPTZ,                       -- first time the restore was seen complete
    checks           INTEGER     NOT NULL DEFAULT 0,    -- how many times phase 2 looked at the item
    last_checked_at  TIMESTAMPTZ,
    bytes_read       BIGINT,
    computed_sha256  CHAR(64),
    metadata_sha256  TEXT,                              -- vault-sha256 user metadata of the cold version
    read_seconds     DOUBLE PRECISION,
    verified_at      TIMESTAMPTZ,                       -- when the bytes were compared (verified or mismatch)
    finished_at      TIMESTAMPTZ,                       -- when the item reached a final state
    finished_run_id  TEXT,
    error            TEXT,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT restore_drills_item UNIQUE (drill_id, cold_bucket, object_key, cold_version_id),
    CONSTRAINT restore_drills_compared_items_are_complete CHECK (
        state NOT IN ('verified', 'mismatch')
        OR (computed_sha256 IS NOT NULL AND bytes_read IS NOT NULL AND verified_at IS NOT NULL)
    ),
    CONSTRAINT restore_drills_failures_say_why CHECK (state NOT IN ('failed', 'mismatch') OR error IS NOT NULL)
);

-- Phase 2 reads every pending item of every drill at each run.
CREATE INDEX IF NOT EXISTS restore_drills_pending
    ON vault_secure.restore_drills (cold_bucket, requested_at)
    WHERE state IN ('requested', 'restored', 'not_needed');
-- Sampling skips object versions drilled recently.
CREATE INDEX IF NOT EXISTS restore_drills_object
    ON vault_secure.restore_drills (cold_bucket, object_key, cold_version_id, requested_at);
CREATE INDEX IF NOT EXISTS restore_drills_drill ON vault_secure.restore_drills (drill_id);

ALTER TABLE vault_secure.restore_drills ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS admin_all_restore_drills ON vault_secure.restore_drills;
CREATE POLICY admin_all_restore_drills ON vault_secure.restore_drills
    FOR ALL TO vault_admin USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON vault_secure.restore_drills TO vault_admin;
GRANT USAGE, SELECT ON SEQUENCE vault_secure.restore_drills_id_seq TO vault_admin;
