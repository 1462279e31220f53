-- Chain of custody (issue 6): every document brought back by `vault-pipeline restore` is an audit entry,
-- and so is every refusal (records that disagree, bytes that did not verify). The inline CHECK of 001 has
-- PostgreSQL's default name audit_logs_event_type_check.
ALTER TABLE vault_secure.audit_logs DROP CONSTRAINT IF EXISTS audit_logs_event_type_check;
ALTER TABLE vault_secure.audit_logs ADD CONSTRAINT audit_logs_event_type_check CHECK (event_type IN (
    'REPLICATION_SUCCESS', 'REPLICATION_FAILURE', 'HOT_DELETED', 'DOCUMENT_RESTORED', 'RESTORE_REFUSED'));
