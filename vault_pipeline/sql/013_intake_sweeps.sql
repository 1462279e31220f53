-- Issue 14: the reconciliation sweep lists the hot bucket in parallel key ranges and keeps its progress
-- here, so a sweep interrupted at any point (a killed run, a restarted machine) resumes where each range
-- stopped instead of listing the bucket again. Every statement is idempotent.

CREATE TABLE IF NOT EXISTS vault_secure.sweeps (
    id            BIGSERIAL   PRIMARY KEY,
    bucket_source TEXT        NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at   TIMESTAMPTZ,
    listers       INTEGER     NOT NULL CHECK (listers >= 1),
    -- where the split points came from: the previous sweep's key samples, a sample of the tracking
    -- database, or nowhere (one range)
    split_source  TEXT        NOT NULL CHECK (split_source IN ('previous-sweep', 'tracking-db', 'none')),
    run_id        TEXT
);
-- At most one sweep in progress per bucket: a new one starts only when the last has finished.
CREATE UNIQUE INDEX IF NOT EXISTS sweeps_one_open_per_bucket
    ON vault_secure.sweeps (bucket_source) WHERE finished_at IS NULL;

-- A key range (start_after, end_key] of a sweep. Keys compare as S3 lists them (UTF-8 bytes), so the
-- bounds are compared with COLLATE "C" in SQL and by code point in Python (the same order).
CREATE TABLE IF NOT EXISTS vault_secure.sweep_ranges (
    sweep_id     BIGINT      NOT NULL REFERENCES vault_secure.sweeps (id) ON DELETE CASCADE,
    range_no     INTEGER     NOT NULL,
    start_after  TEXT,                    -- exclusive lower bound; NULL: from the first key
    end_key      TEXT,                    -- inclusive upper bound; NULL: to the last key
    last_key     TEXT,                    -- progress: the last key listed and registered
    objects      BIGINT      NOT NULL DEFAULT 0,
    pages        INTEGER     NOT NULL DEFAULT 0,
    new_objects  BIGINT      NOT NULL DEFAULT 0,
    changed_objects BIGINT   NOT NULL DEFAULT 0,
    seconds      DOUBLE PRECISION NOT NULL DEFAULT 0,
    done_at      TIMESTAMPTZ,
    PRIMARY KEY (sweep_id, range_no)
);

-- The last key of every listing page (one key per ~1000): the key distribution the next sweep splits on.
CREATE TABLE IF NOT EXISTS vault_secure.sweep_samples (
    sweep_id BIGINT NOT NULL REFERENCES vault_secure.sweeps (id) ON DELETE CASCADE,
    key      TEXT   COLLATE "C" NOT NULL,
    PRIMARY KEY (sweep_id, key)
);

ALTER TABLE vault_secure.sweeps ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault_secure.sweep_ranges ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault_secure.sweep_samples ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS admin_all_sweeps ON vault_secure.sweeps;
CREATE POLICY admin_all_sweeps ON vault_secure.sweeps FOR ALL TO vault_admin USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS admin_all_sweep_ranges ON vault_secure.sweep_ranges;
CREATE POLICY admin_all_sweep_ranges ON vault_secure.sweep_ranges FOR ALL TO vault_admin USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS admin_all_sweep_samples ON vault_secure.sweep_samples;
CREATE POLICY admin_all_sweep_samples ON vault_secure.sweep_samples FOR ALL TO vault_admin USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON vault_secure.sweeps, vault_secure.sweep_ranges, vault_secure.sweep_samples
    TO vault_admin;
GRANT USAGE, SELECT ON SEQUENCE vault_secure.sweeps_id_seq TO vault_admin;
