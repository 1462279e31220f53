-- Issue 14: what the application's documents table says of a document (the app-table change feed).
-- The hot object's own metadata stays the reference for the retention policy (source_document_type,
-- document_type); the application's document type is kept beside it for the operator. The application's
-- document_id and user_id fill the specification's columns of 008 where the row has none yet.
-- Every statement is idempotent.

ALTER TABLE vault_secure.replication_status ADD COLUMN IF NOT EXISTS announced_document_type TEXT;
