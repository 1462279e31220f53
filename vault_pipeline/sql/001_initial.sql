-- vault-pipeline tracking schema, version 1.
-- The database is the manifest (what must be copied, who is copying it, what was verified);
-- the cold site stays the record of what exists. Every statement is idempotent.

CREATE SCHEMA IF NOT EXISTS vault_secure;

CREATE TABLE IF NOT EXISTS vault_secure.replication_status (
    id                     BIGSERIAL PRIMARY KEY,
    -- columns of the product specification
    object_key             TEXT        NOT NULL,
    source_bucket          TEXT        NOT NULL,
    destination_bucket     TEXT        NOT NULL,
    source_etag            TEXT        NOT NULL,
    file_size              BIGINT      NOT NULL CHECK (file_size >= 0),
    status                 TEXT        NOT NULL DEFAULT 'pending'
                           CHECK (status IN ('pending', 'in_progress', 'replicated', 'failed')),
    retry_count            INTEGER     NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    error_message          TEXT,
    replicated_at          TIMESTAMPTZ,
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- what the design adds
    source_last_modified   TIMESTAMPTZ NOT NULL,
    partition_day          DATE        NOT NULL,   -- UTC day of source_last_modified: the Dagster partition
    source_version_id      TEXT,
    sha256                 CHAR(64),               -- whole-object SHA-256 computed in-stream (fixity value)
    cold_checksum          TEXT,                   -- the cold site's own checksum (SHA256 full or composite "-N")
    cold_checksum_type     TEXT CHECK (cold_checksum_type IN ('FULL_OBJECT', 'COMPOSITE')),
    part_size              BIGINT,                 -- multipart part size (composite checksum depends on it)
    document_type          TEXT,                   -- policy class applied (payslip, invoice, ..., general)
    source_document_type   TEXT,                   -- raw document-type metadata value as found on the hot site
    retention_years        INTEGER CHECK (retention_years BETWEEN 1 AND 100),
    retain_until           TIMESTAMPTZ,
    retention_base         TEXT CHECK (retention_base IN ('document-date', 'last-modified')),
    storage_class          TEXT,
    cold_version_id        TEXT,
    cold_etag              TEXT,
    cold_upload_id         TEXT,                   -- open multipart upload, aborted if the run dies
    previous_cold_version_ids TEXT[] NOT NULL DEFAULT '{}',  -- locked versions of earlier sources
    replication_count      INTEGER     NOT NULL DEFAULT 0,
    verified_at            TIMESTAMPTZ,
    lease_owner            TEXT,
    lease_expires_at       TIMESTAMPTZ,
    last_attempt_at        TIMESTAMPTZ,
    hot_deleted_at         TIMESTAMPTZ,
    CONSTRAINT replication_status_key UNIQUE (source_bucket, object_key),
    CONSTRAINT replicated_rows_are_complete CHECK (
        status <> 'replicated' OR (
            sha256 IS NOT NULL AND cold_version_id IS NOT NULL AND retain_until IS NOT NULL
            AND document_type IS NOT NULL AND replicated_at IS NOT NULL AND verified_at IS NOT NULL
        )
    )
);

CREATE INDEX IF NOT EXISTS replication_status_day_status
    ON vault_secure.replication_status (partition_day, status);
CREATE INDEX IF NOT EXISTS replication_status_status
    ON vault_secure.replication_status (status) WHERE status <> 'replicated';
CREATE INDEX IF NOT EXISTS replication_status_lease
    ON vault_secure.replication_status (lease_expires_at) WHERE status = 'in_progress';

CREATE TABLE IF NOT EXISTS vault_secure.audit_logs (
    id           BIGSERIAL PRIMARY KEY,
    event_type   TEXT        NOT NULL
                 CHECK (event_type IN ('REPLICATION_SUCCESS', 'REPLICATION_FAILURE', 'HOT_DELETED')),
    object_key   TEXT        NOT NULL,
    source_bucket TEXT       NOT NULL,
    run_id       TEXT,
    actor        TEXT        NOT NULL DEFAULT current_user,
    metadata     JSONB       NOT NULL DEFAULT '{}'::jsonb,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS audit_logs_key ON vault_secure.audit_logs (source_bucket, object_key);
CREATE INDEX IF NOT EXISTS audit_logs_event_time ON vault_secure.audit_logs (event_type, created_at);

-- Row-level security: only the vault_admin role reads or writes through policies. The pipeline
-- connects as the owner of the tables (owners bypass RLS unless FORCE is set), operators get vault_admin.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vault_admin') THEN
        CREATE ROLE vault_admin NOLOGIN;
    END IF;
END
$$;

ALTER TABLE vault_secure.replication_status ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault_secure.audit_logs ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS admin_all_replication_status ON vault_secure.replication_status;
CREATE POLICY admin_all_replication_status ON vault_secure.replication_status
    FOR ALL TO vault_admin USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS admin_all_audit_logs ON vault_secure.audit_logs;
CREATE POLICY admin_all_audit_logs ON vault_secure.audit_logs
    FOR ALL TO vault_admin USING (true) WITH CHECK (true);

GRANT USAGE ON SCHEMA vault_secure TO vault_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA vault_secure TO vault_admin;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA vault_secure TO vault_admin;
