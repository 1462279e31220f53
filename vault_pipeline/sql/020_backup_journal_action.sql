-- Issue 17: tracking-database backups on the cold site are journaled like every cold write, with their own
-- action ("backup": a dump or a backup's manifest; it changes no replication_status row). The inline CHECK of
-- migration 005 got PostgreSQL's default name.
ALTER TABLE vault_secure.journal_entries DROP CONSTRAINT IF EXISTS journal_entries_action_check;
ALTER TABLE vault_secure.journal_entries ADD CONSTRAINT journal_entries_action_check
    CHECK (action IN ('copy', 'hot_delete', 'retention_extend', 'report', 'backup')) NOT VALID;
-- NOT VALID: the rows already there satisfied the stricter check of 005; no scan of a large journal index.

-- `vault-pipeline status` shows the latest backups from their entries: a lookup in a tiny partial index, not a
-- scan of the whole journal.
CREATE INDEX IF NOT EXISTS journal_entries_backups ON vault_secure.journal_entries (created_at)
    WHERE action = 'backup';
