"""PostgreSQL manifest: vault_secure.replication_status and audit_logs.

Rows move pending -> in_progress -> replicated | failed. A worker claims rows with
SELECT ... FOR UPDATE SKIP LOCKED and holds them with a lease it keeps renewing; a row whose lease
expired (its worker died) is claimable again. Writes of a finished copy check the lease so that a worker
that lost its row never overwrites the new owner's work.

One module per responsibility, one store that has them all:

    connection.py    pool, schema migrations, the audit log writer
    records.py       ClaimedRow, ReplicationOutcome, RegisterResult
    registration.py  listing pages diffed against the manifest
    announcements.py what the application's table says of its documents, and which of its keys are registered
    claims.py        claims and leases
    results.py       verified copies and failures (rows, audit log, journal entries)
    hot_deletion.py  rows whose hot object may go, and the record that it went
    reports.py       read-only questions, and the record of a verification
    sweeps.py        the reconciliation sweep's ranges, progress and key samples
    file_transfers.py the SFTP intake's transfer log and its inbox looks
"""

from vault_pipeline.replication.tracking.announcements import Announcements
from vault_pipeline.replication.tracking.claims import Claims
from vault_pipeline.replication.tracking.connection import TrackingDatabaseError, redact_dsn
from vault_pipeline.replication.tracking.file_transfers import TransferLog
from vault_pipeline.replication.tracking.hot_deletion import HotDeletion
from vault_pipeline.replication.tracking.records import ClaimedRow, RegisterResult, ReplicationOutcome
from vault_pipeline.replication.tracking.registration import Registration
from vault_pipeline.replication.tracking.reports import Reports
from vault_pipeline.replication.tracking.results import Results
from vault_pipeline.replication.tracking.sweeps import SweepProgress, SweepRange, SweepRecord


class TrackingStore(Registration, Announcements, Claims, Results, HotDeletion, Reports, SweepProgress, TransferLog):
    """Thin data-access layer over the tracking database; one instance per process, thread-safe through its
    pool (see TrackingConnection)."""


__all__ = ["ClaimedRow", "RegisterResult", "ReplicationOutcome", "SweepRange", "SweepRecord", "TrackingDatabaseError",
           "TrackingStore", "redact_dsn"]
