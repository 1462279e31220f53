-- Issue 14 (docs/scaling.md, "The tracking database at scale"): a sequenced journal entry's `fields` are
-- in its `entry` (which adds seq, time and the chain links), so the flusher now empties `fields` when it
-- sequences an entry. This empties them for the entries sequenced before, once (a write of every such
-- row: on a large database, run it in a quiet window). Idempotent.
UPDATE vault_secure.journal_entries SET fields = '{}'::jsonb WHERE seq IS NOT NULL AND fields <> '{}'::jsonb;
COMMENT ON COLUMN vault_secure.journal_entries.fields IS
    'the entry before sequencing; emptied once sequenced (the entry holds it)';
