-- The write journal of the cold site (issue 4).
-- journal_entries is an outbox: an entry is inserted in the same transaction as the state change it
-- records (a verified copy, a hot deletion, a report), so it can never be lost between the two. A single
-- flusher per site (advisory lock) later gives committed entries their seq, in the order it finds them,
-- and writes them to the cold site as segments. Seqs are never handed out at insert time: a transaction
-- that commits late simply gets a later seq, so a reader following seqs can never skip it.

CREATE TABLE IF NOT EXISTS vault_secure.journal_entries (
    id           BIGSERIAL PRIMARY KEY,
    site         TEXT        NOT NULL,          -- the cold bucket whose journal this entry belongs to
    action       TEXT        NOT NULL
                 CHECK (action IN ('copy', 'hot_delete', 'retention_extend', 'report')),
    object_key   TEXT        NOT NULL,
    version_id   TEXT,
    fields       JSONB       NOT NULL,          -- the entry before sequencing
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    seq          BIGINT,                        -- given by the flusher, contiguous per site
    entry        JSONB,                         -- the sealed entry exactly as written to the segment
    entry_hash   CHAR(64),
    segment_key  TEXT,
    written_at   TIMESTAMPTZ,                   -- the segment holding it is on the cold site
    CONSTRAINT journal_entries_site_seq UNIQUE (site, seq)
);

CREATE INDEX IF NOT EXISTS journal_entries_unsequenced
    ON vault_secure.journal_entries (site, id) WHERE seq IS NULL;
CREATE INDEX IF NOT EXISTS journal_entries_unwritten
    ON vault_secure.journal_entries (site, seq) WHERE seq IS NOT NULL AND written_at IS NULL;
CREATE INDEX IF NOT EXISTS journal_entries_key
    ON vault_secure.journal_entries (site, object_key);

-- Where each site's journal stands: the next seq to give and the hash the next entry must link to.
CREATE TABLE IF NOT EXISTS vault_secure.journal_state (
    site        TEXT PRIMARY KEY,
    next_seq    BIGINT      NOT NULL CHECK (next_seq >= 1),
    last_hash   CHAR(64)    NOT NULL,
    last_time   TIMESTAMPTZ,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Daily seals (signed Merkle checkpoints) written to the cold site.
CREATE TABLE IF NOT EXISTS vault_secure.journal_seals (
    site        TEXT        NOT NULL,
    day         DATE        NOT NULL,
    seal_key    TEXT        NOT NULL,
    version_id  TEXT,
    first_seq   BIGINT,
    last_seq    BIGINT,
    tree_size   BIGINT      NOT NULL,
    root        CHAR(64)    NOT NULL,
    seal_hash   CHAR(64)    NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (site, day)
);

-- On a database rebuilt from the journal (secondary site): how far the replay got.
CREATE TABLE IF NOT EXISTS vault_secure.rebuild_state (
    site             TEXT PRIMARY KEY,
    next_seq         BIGINT      NOT NULL,
    last_hash        CHAR(64)    NOT NULL,
    last_entry_time  TIMESTAMPTZ,
    entries_applied  BIGINT      NOT NULL DEFAULT 0,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A replicated row whose copy is in the journal (outbox) already. Rows replicated before the journal
-- existed start false and are journaled by the next flush's repair step.
ALTER TABLE vault_secure.replication_status ADD COLUMN IF NOT EXISTS journaled BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS replication_status_unjournaled
    ON vault_secure.replication_status (destination_bucket, id) WHERE status = 'replicated' AND NOT journaled;

ALTER TABLE vault_secure.journal_entries ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault_secure.journal_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault_secure.journal_seals ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault_secure.rebuild_state ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS admin_all_journal_entries ON vault_secure.journal_entries;
CREATE POLICY admin_all_journal_entries ON vault_secure.journal_entries FOR ALL TO vault_admin USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS admin_all_journal_state ON vault_secure.journal_state;
CREATE POLICY admin_all_journal_state ON vault_secure.journal_state FOR ALL TO vault_admin USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS admin_all_journal_seals ON vault_secure.journal_seals;
CREATE POLICY admin_all_journal_seals ON vault_secure.journal_seals FOR ALL TO vault_admin USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS admin_all_rebuild_state ON vault_secure.rebuild_state;
CREATE POLICY admin_all_rebuild_state ON vault_secure.rebuild_state FOR ALL TO vault_admin USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA vault_secure TO vault_admin;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA vault_secure TO vault_admin;
