"""What the store hands out and takes in: a claimed row, a verified copy's outcome, a registration's
counts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from vault_pipeline.replication.verify import ColdEvidence


@dataclass(frozen=True)
class ClaimedRow:
    """A claimed replication_status row; fields are named after its columns."""

    id: int
    s3_key: str
    ovh_etag: str
    ovh_size: int
    source_last_modified: dt.datetime
    partition_day: dt.date
    retry_count: int
    cold_upload_id: str | None
    aws_version_id: str | None
    reclaimed: bool = False  # its previous worker died holding it (lease expired)


@dataclass(frozen=True)
class ReplicationOutcome:
    """Everything a verified cold copy tells the manifest."""

    source_etag: str
    source_version_id: str | None
    file_size: int
    source_last_modified: dt.datetime
    sha256: str
    cold_checksum: str
    cold_checksum_type: str
    part_size: int | None
    document_type: str
    source_document_type: str | None
    retention_years: int
    retain_until: dt.datetime
    retention_base: str
    storage_class: str
    cold_version_id: str
    cold_etag: str
    adopted: bool = False  # an existing verified cold version was recognised instead of copied again
    notes: tuple[str, ...] = field(default_factory=tuple)
    lock_repaired: str | None = None  # "set"/"extended": verification itself wrote the lock (PutObjectRetention)
    # What the verifying HEAD showed, for this run's audit: kept in the REPLICATION_SUCCESS audit log
    # (evidence.py), not in the row.
    evidence: ColdEvidence | None = field(default=None, compare=False, repr=False)
    # The application's identifiers from the hot object's metadata (valid UUIDs only, else None and a note).
    document_id: str | None = None
    user_id: str | None = None
    # Why the retention is not the policy as written (policy.ResolvedRetention.note): a fallback, the minimum lock.
    retention_note: str | None = None


@dataclass(frozen=True)
class RegisterResult:
    new: int
    changed: int
    days: dict[dt.date, int]  # partition day -> rows that became pending
