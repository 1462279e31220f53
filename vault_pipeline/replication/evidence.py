"""What a run's own verification saw of the cold copies it wrote, for that same run's audit.

A copy is verified by a HEAD of its exact version right after it is written. The asset checks of the
same run audit every object of the day a few seconds later; for the versions this run just verified,
asking the cold site the same question again would double the requests per document and add nothing.
The audit judges those versions from the verifying HEAD (its own rules, applied to that answer) and
asks the cold site about every other object of the day; later runs (verification_report, the checks of
the next run) look again for real.

The answer travels through the tracking database, not through process memory, so the checks read it
whatever process or machine runs them (multiprocess executor, any run launcher): the REPLICATION_SUCCESS
audit log row of a copy, written in the transaction that records it, carries it as `verified_head`
(`evidence_record`), and `run_evidence` reads back this run's rows (index of migration 009). A run that
verified nothing (checks-only job, the report, the next run) finds none and is audited in full.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import TYPE_CHECKING, Any

from vault_pipeline.replication.verify import ColdEvidence

if TYPE_CHECKING:
    from vault_pipeline.replication.tracking import TrackingStore

EVIDENCE_DETAIL = "verified_head"  # key of the evidence in a REPLICATION_SUCCESS audit log's metadata


class RunEvidence:
    """Evidence by key; thread-safe."""

    def __init__(self) -> None:
        self._by_key: dict[str, tuple[ColdEvidence, str]] = {}
        self._lock = threading.Lock()

    def record(self, key: str, evidence: ColdEvidence, source_etag: str) -> None:
        with self._lock:
            self._by_key[key] = (evidence, source_etag)

    def get(self, key: str) -> tuple[ColdEvidence, str] | None:
        """The verifying HEAD's evidence of `key` and the hot ETag the copy was made from."""
        return self._by_key.get(key)

    def __len__(self) -> int:
        return len(self._by_key)


def evidence_record(evidence: ColdEvidence, source_etag: str) -> dict[str, Any]:
    """The evidence as JSON for the audit log (a few hundred bytes): what the cold site answered."""
    return {
        "version_id": evidence.version_id, "size": evidence.size, "checksum_sha256": evidence.checksum_sha256,
        "metadata_sha256": evidence.metadata_sha256, "lock_mode": evidence.lock_mode,
        "retain_until": evidence.retain_until.isoformat() if evidence.retain_until else None,
        "storage_class": evidence.storage_class, "tag_count": evidence.tag_count,
        "tags_sent": dict(evidence.tags_sent) if evidence.tags_sent is not None else None,
        "copied_from_etag": source_etag,
    }


def evidence_from_record(record: dict[str, Any]) -> tuple[ColdEvidence, str]:
    """The inverse of evidence_record."""
    until, tags = record["retain_until"], record["tags_sent"]
    evidence = ColdEvidence(
        version_id=record["version_id"], size=int(record["size"]), checksum_sha256=record["checksum_sha256"],
        metadata_sha256=record["metadata_sha256"], lock_mode=record["lock_mode"],
        retain_until=dt.datetime.fromisoformat(until) if until else None, storage_class=record["storage_class"],
        tag_count=None if record["tag_count"] is None else int(record["tag_count"]),
        tags_sent=tuple(sorted(tags.items())) if tags is not None else None,
    )
    return evidence, record["copied_from_etag"]


def run_evidence(store: TrackingStore, run_id: str, source_bucket: str) -> RunEvidence:
    """The evidence of every copy `run_id` verified and recorded as replicated (none: an empty one)."""
    evidence = RunEvidence()
    with store.pool.connection() as conn:
        rows = conn.execute(
            "SELECT object_key, metadata -> %s FROM vault_secure.audit_logs"
            " WHERE run_id = %s AND event_type = 'REPLICATION_SUCCESS' AND source_bucket = %s AND metadata ? %s"
            " ORDER BY id",
            (EVIDENCE_DETAIL, run_id, source_bucket, EVIDENCE_DETAIL),
        ).fetchall()
    for key, record in rows:  # in write order: a key verified twice keeps its last answer
        evidence.record(key, *evidence_from_record(record))
    return evidence
