-- Issue 12: no document stays uncopied because of its date. A document whose policy date is already past
-- (a payslip dated 1960, kept 50 years) is locked until now + VAULT_MINIMUM_LOCK_DAYS: its retention_base
-- is 'minimum'. The inline CHECK of 001 has PostgreSQL's default name replication_status_retention_base_check.
-- Every statement is idempotent.
ALTER TABLE vault_secure.replication_status DROP CONSTRAINT IF EXISTS replication_status_retention_base_check;
ALTER TABLE vault_secure.replication_status ADD CONSTRAINT replication_status_retention_base_check
    CHECK (retention_base IN ('document-date', 'last-modified', 'minimum'));

-- Why the retention is not the policy as written: an unknown document type, an invalid document-date (one
-- later than the upload day falls back to the upload day), the minimum lock. NULL when the policy applied.
ALTER TABLE vault_secure.replication_status ADD COLUMN IF NOT EXISTS retention_note TEXT;
