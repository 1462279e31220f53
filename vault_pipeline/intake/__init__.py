"""Where documents come from: change feeds (SeaweedFS filer stream, S3 events through SQS, the application's
documents table) and the reconciliation sweep, which lists the hot bucket in parallel key ranges.

Every source ends in the same place: `ingest()` registers what it found in the tracking database, where
registration is idempotent by key + ETag, so a feed that delivers a change twice (at least once) or a sweep
that lists a known object again changes nothing. Plain Python: no Dagster here.
"""
