-- Issue 16: a FAILED transfer is either worth another attempt (the server or the hot site was in trouble,
-- permission denied until an operator fixes it) or not (a symlink never followed, a file that vanished or
-- changed: a new delivery of that name is registered afresh). Claims retry only the former.
ALTER TABLE vault_secure.file_transfer_log ADD COLUMN IF NOT EXISTS retryable BOOLEAN NOT NULL DEFAULT true;

-- The inbox sensor's first look at files not yet stable (intake/sftp_inbox.py): a file is registered once a
-- later listing, at least SFTP_STABLE_SECONDS after `first_seen`, sees the same size and mtime. Kept here, not
-- in the sensor's cursor, so that a drop of 10,000 files costs rows, not a cursor of megabytes.
CREATE TABLE IF NOT EXISTS vault_secure.sftp_inbox_looks (
    inbox        TEXT        NOT NULL,
    filename     TEXT        NOT NULL,
    file_size    BIGINT      NOT NULL,
    source_mtime TIMESTAMPTZ NOT NULL,
    first_seen   TIMESTAMPTZ NOT NULL,  -- when this size and mtime were first seen
    last_seen    TIMESTAMPTZ NOT NULL,  -- looks not seen by a whole listing pass are forgotten
    PRIMARY KEY (inbox, filename)
);
