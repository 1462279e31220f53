-- A run's asset checks read back the verifying HEAD of every copy the run recorded (the `verified_head` of
-- its REPLICATION_SUCCESS audit logs, replication/evidence.py), from whatever process runs them: find a
-- run's rows without reading the whole log. Partial: only the rows that query reads.
CREATE INDEX IF NOT EXISTS audit_logs_run_success
    ON vault_secure.audit_logs (run_id) WHERE event_type = 'REPLICATION_SUCCESS';
