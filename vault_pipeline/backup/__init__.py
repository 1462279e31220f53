"""Tracking-database backups (pg_dump -Fc on the cold site) and their restore in re-runnable steps."""
