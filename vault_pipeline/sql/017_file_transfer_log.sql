-- Issue 16: the SFTP intake's per-file transfer log, with the reference design's columns (filename unique per
-- inbox, worker_id, transfer start/end, file_size_mb, download/upload/total durations, status IN_PROGRESS |
-- COMPLETED | FAILED, error_message, created_at, updated_at) and what the design needs besides: the inbox a
-- file came from, the stable look that registered it (size, mtime), PENDING for a file registered and not yet
-- claimed, the lease of the worker transferring it, the hot object it became and the SHA-256 taken in the
-- stream. Every statement is idempotent.

CREATE TABLE IF NOT EXISTS vault_secure.file_transfer_log (
    id                  BIGSERIAL   PRIMARY KEY,
    inbox               TEXT        NOT NULL,   -- sftp://user@host:port/remote_dir, the source of `filename`
    filename            TEXT        NOT NULL,   -- path relative to the inbox, '/'-separated
    worker_id           TEXT,                   -- the lease owner: <run id>/<pid>/<thread>
    transfer_start_time TIMESTAMPTZ,
    transfer_end_time   TIMESTAMPTZ,
    file_size_mb        NUMERIC(16, 3),
    download_duration   DOUBLE PRECISION,       -- seconds reading from the SFTP server
    upload_duration     DOUBLE PRECISION,       -- seconds writing to the hot site
    total_duration      DOUBLE PRECISION,
    status              TEXT        NOT NULL DEFAULT 'PENDING'
                        CHECK (status IN ('PENDING', 'IN_PROGRESS', 'COMPLETED', 'FAILED')),
    error_message       TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- what the design needs
    file_size           BIGINT      NOT NULL CHECK (file_size >= 0),
    source_mtime        TIMESTAMPTZ NOT NULL,   -- the stable look that registered this delivery
    lease_expires_at    TIMESTAMPTZ,
    attempts            INTEGER     NOT NULL DEFAULT 0,
    hot_bucket          TEXT,
    hot_key             TEXT,
    hot_etag            TEXT,
    hot_version_id      TEXT,
    sha256              TEXT        CHECK (sha256 IS NULL OR sha256 ~ '^[0-9a-f]{64}$'),
    document_type       TEXT,
    after_transfer      TEXT        CHECK (after_transfer IS NULL OR after_transfer IN ('moved', 'deleted', 'kept')),
    UNIQUE (inbox, filename)
);

-- What a claim reads: the files of an inbox waiting for a transfer, or held by a lease that ran out.
CREATE INDEX IF NOT EXISTS file_transfer_log_work
    ON vault_secure.file_transfer_log (inbox, id) WHERE status IN ('PENDING', 'IN_PROGRESS', 'FAILED');
