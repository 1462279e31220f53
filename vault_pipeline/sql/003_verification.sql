-- Verification history: one row per verified partition day and run, so the rolling schedule knows which
-- days are due and every report states its coverage.
CREATE TABLE IF NOT EXISTS vault_secure.verification_reports (
    id                BIGSERIAL PRIMARY KEY,
    partition_day     DATE        NOT NULL,
    run_id            TEXT,
    verified_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    objects           INTEGER     NOT NULL,
    ok                INTEGER     NOT NULL,
    counts            JSONB       NOT NULL DEFAULT '{}'::jsonb,
    report_key        TEXT,
    report_version_id TEXT
);

CREATE INDEX IF NOT EXISTS verification_reports_day ON vault_secure.verification_reports (partition_day, verified_at);

ALTER TABLE vault_secure.verification_reports ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS admin_all_verification_reports ON vault_secure.verification_reports;
CREATE POLICY admin_all_verification_reports ON vault_secure.verification_reports
    FOR ALL TO vault_admin USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON vault_secure.verification_reports TO vault_admin;
GRANT USAGE, SELECT ON SEQUENCE vault_secure.verification_reports_id_seq TO vault_admin;
