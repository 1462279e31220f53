"""Restore drill: prove that sampled cold copies can actually be read back and still hash right.

Verification from HEAD proves a copy was *written* right; only reading the bytes proves it can be
*recovered*. A Deep Archive object cannot be read until a restore completes (Bulk: up to 48 h), which is
far longer than any run should last, so the drill is a durable two-phase process recorded in
`vault_secure.restore_drills` (one row per sampled object version, `drill_store.py`):

* **phase 1** (`RestoreDrill.start`) samples `replicated` rows at random, skipping versions drilled
  recently, records each one (`requested`), and asks the cold site to restore the exact version
  (RestoreObject with VersionId and the configured tier). A server that refuses because the object is
  readable anyway (storage class not archived: `InvalidObjectState`) or because it has no restore at all
  (SeaweedFS answers `MethodNotAllowed`, others `NotImplemented`) makes the item `not_needed`: it is read
  directly.
* **phase 2** (`RestoreDrill.advance`), at every run, looks at every pending item of every drill: HEAD
  the version; once `x-amz-restore` says `ongoing-request="false"` (or no restore was needed) it streams
  the object in bounded chunks, recomputes the SHA-256 and compares it with the manifest's value *and*
  the object's own `vault-sha256` metadata (and the size): `verified` or `mismatch`. An item still
  restoring stays pending for the next run; past the deadline it becomes `failed` with a message that
  says so. An item whose restore vanished (no `x-amz-restore`: the request was lost, or the restored copy
  expired before it was read) gets its restore requested again.

Memory is bounded by `chunk_size x read_concurrency` whatever the object sizes. Only one drill process
works on a cold bucket at a time (a PostgreSQL session advisory lock, released by the server if the
process dies), so two overlapping runs never read the same object twice.

Plain Python: no Dagster here.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from vault_pipeline.replication.errors import describe_s3_error
from vault_pipeline.replication.tracking import TrackingStore
from vault_pipeline.replication.verify import META_SHA256, head_version, storage_class_of
from vault_pipeline.retrieval.cold import ARCHIVE_CLASSES, RestoreHeader, error_code, request_restore, stream_version
from vault_pipeline.retrieval.drill_store import (
    FINAL_STATES,
    NOW,
    PENDING_STATES,
    DrillItem,
    DrillSettings,
    DrillStore,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemOutcome:
    """What one step did to one item: its state afterwards and why."""

    item_id: int
    drill_id: str
    key: str
    version_id: str
    state: str
    detail: str
    restore_required: bool | None = None
    bytes_read: int = 0
    read_seconds: float = 0.0
    computed_sha256: str | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


@dataclass
class StepReport:
    """Outcome of phase 1 (sampling and restore requests) or of one phase-2 pass."""

    drill_id: str | None = None
    outcomes: list[ItemOutcome] = field(default_factory=list)
    duration_s: float = 0.0
    read_wall_seconds: float = 0.0  # wall time spent reading (reads run concurrently)

    def count(self, state: str) -> int:
        return sum(1 for o in self.outcomes if o.state == state)

    @property
    def bytes_read(self) -> int:
        return sum(o.bytes_read for o in self.outcomes)

    @property
    def pending(self) -> list[ItemOutcome]:
        return [o for o in self.outcomes if not o.final]


# ---------------------------------------------------------------------------------------------------
# The drill


class RestoreDrill:
    """Both phases over one cold bucket. Thread-safe for reads: boto3 clients and the pool are."""

    def __init__(self, *, store: TrackingStore, cold: Any, cold_bucket: str, source_bucket: str,
                 settings: DrillSettings | None = None) -> None:
        self.db = DrillStore(store)
        self.cold = cold
        self.cold_bucket = cold_bucket
        self.source_bucket = source_bucket
        self.settings = settings or DrillSettings()

    def exclusive(self) -> Any:
        return self.db.exclusive(self.cold_bucket)

    # -- phase 1 ------------------------------------------------------------------------------
    def start(self, sample_size: int, *, run_id: str | None = None, drill_id: str | None = None) -> StepReport:
        """Sample and request restores. Returns one outcome per sampled item (none when nothing to drill)."""
        started = time.monotonic()
        drill_id = drill_id or str(uuid.uuid4())
        items = self.db.sample(drill_id=drill_id, run_id=run_id, source_bucket=self.source_bucket,
                               cold_bucket=self.cold_bucket, size=sample_size, settings=self.settings)
        report = StepReport(drill_id=drill_id if items else None)
        for item in items:
            outcome = self._request(item, run_id)
            report.outcomes.append(outcome)
        report.duration_s = time.monotonic() - started
        return report

    def _request(self, item: DrillItem, run_id: str | None) -> ItemOutcome:
        """Ask for a restore of the exact version unless it is readable already; record what happened."""
        where = f"cold object {item.object_key!r} version {item.cold_version_id}"
        try:
            head = head_version(self.cold, self.cold_bucket, item.object_key, item.cold_version_id)
        except Exception as exc:
            return self._record(item, "requested", run_id, checked=False,
                                detail=f"HEAD failed, will retry: {describe_s3_error(exc)[0]}")
        if head is None:
            return self._record(item, "failed", run_id, error=f"{where} not found on the cold site "
                                "(a locked version must not disappear)")
        storage_class = storage_class_of(head)
        header = RestoreHeader.parse(head.get("Restore"))
        if storage_class not in ARCHIVE_CLASSES:
            return self._record(item, "not_needed", run_id, restore_required=False, checked=False,
                                detail=f"storage class {storage_class} is readable without a restore")
        if header is not None:  # a restore of this version exists already (an earlier drill, an operator)
            state = "requested" if header.ongoing else "restored"
            return self._record(item, state, run_id, restore_required=True, checked=False,
                                restored_at=True if state == "restored" else None, detail=header.raw)
        return self._send_restore(item, run_id, where)

    def _send_restore(self, item: DrillItem, run_id: str | None, where: str, *, again: bool = False) -> ItemOutcome:
        prefix = "restore requested again" if again else "restore requested"
        try:
            answer = request_restore(self.cold, self.cold_bucket, item.object_key, item.cold_version_id,
                                     days=item.restore_days, tier=item.tier)
        except ClientError as exc:
            text, retryable = describe_s3_error(exc)
            if retryable:
                return self._record(item, "requested", run_id, checked=again,
                                    detail=f"{prefix} failed, will retry: {text}")
            return self._record(item, "failed", run_id, error=f"RestoreObject on {where} failed: {text}")
        except Exception as exc:  # connection errors: the next pass asks again (no x-amz-restore yet)
            return self._record(item, "requested", run_id, checked=again,
                                detail=f"{prefix} failed, will retry: {describe_s3_error(exc)[0]}")
        if answer.answer == "in_progress":
            return self._record(item, "requested", run_id, restore_required=True, checked=again,
                                detail=f"{prefix}: a restore is already in progress")
        if answer.answer == "not_needed":
            # SeaweedFS: MethodNotAllowed (no restore at all); AWS/moto: InvalidObjectState for a class
            # that needs none. Either way the only test left is to read the bytes.
            return self._record(item, "not_needed", run_id, restore_required=False, checked=again,
                                detail=f"the cold site refused RestoreObject ({answer.refusal}); reading directly")
        detail = f"{prefix}: tier {item.tier}, {item.restore_days} day(s) [HTTP {answer.http_status}]"
        if answer.answer == "restored":
            detail += " (the server says a restored copy exists already)"
        return self._record(item, "requested", run_id, restore_required=True, checked=again, detail=detail)

    # -- phase 2 ------------------------------------------------------------------------------
    def advance(self, *, run_id: str | None = None,
                progress: Callable[[ItemOutcome], None] | None = None) -> StepReport:
        """One pass over every pending item: read what is readable, keep what is still restoring."""
        started = time.monotonic()
        report = StepReport()
        items = self.db.pending(self.cold_bucket, self.settings.deadline)
        to_read: list[tuple[DrillItem, dict[str, Any]]] = []
        for item in items:
            decision = self._check(item, run_id)
            if isinstance(decision, ItemOutcome):
                report.outcomes.append(decision)
                if progress:
                    progress(decision)
            else:
                to_read.append((item, decision))
        if to_read:
            read_started = time.monotonic()
            with ThreadPoolExecutor(max_workers=min(self.settings.read_concurrency, len(to_read)),
                                    thread_name_prefix="drill-read") as pool:
                for outcome in pool.map(lambda pair: self._read(pair[0], pair[1], run_id), to_read):
                    report.outcomes.append(outcome)
                    if progress:
                        progress(outcome)
            report.read_wall_seconds = time.monotonic() - read_started
        report.duration_s = time.monotonic() - started
        return report

    def _check(self, item: DrillItem, run_id: str | None) -> ItemOutcome | dict[str, Any]:
        """HEAD the version and decide: an outcome (still pending, failed) or the HEAD to read with."""
        where = f"cold object {item.object_key!r} version {item.cold_version_id}"
        late = (f"pending since {item.requested_at:%Y-%m-%d %H:%M} UTC, longer than the "
                f"{self.settings.deadline.total_seconds() / 3600:g} h deadline")
        try:
            head = head_version(self.cold, self.cold_bucket, item.object_key, item.cold_version_id)
        except Exception as exc:
            text, retryable = describe_s3_error(exc)
            if retryable and not item.overdue:
                return self._record(item, item.state, run_id, detail=f"HEAD failed, will retry: {text}")
            return self._record(item, "failed", run_id, error=f"HEAD {where} failed: {text}"
                                + (f"; {late}" if item.overdue else ""))
        if head is None:
            return self._record(item, "failed", run_id,
                                error=f"{where} not found on the cold site (a locked version must not disappear)")
        if item.state == "not_needed" or storage_class_of(head) not in ARCHIVE_CLASSES:
            return head
        header = RestoreHeader.parse(head.get("Restore"))
        if header is not None and not header.ongoing:
            if item.state != "restored":
                self.db.update(item.id, "restored", restore_required=True, restored_at=NOW,
                               restore_status=header.raw, checked=False)
            return head
        if header is not None:  # still restoring
            if item.overdue:
                return self._record(item, "failed", run_id,
                                    error=f"restore of {where} (tier {item.tier}) still in progress: {late}")
            return self._record(item, "requested", run_id, detail=header.raw)
        # No x-amz-restore on an archived object: the request was lost, or the restored copy expired
        # before a run read it. Ask again (the deadline still counts from the first request).
        if item.overdue:
            return self._record(item, "failed", run_id,
                                error=f"no restore of {where} in progress or completed: {late}")
        return self._send_restore(item, run_id, where, again=True)

    def _read(self, item: DrillItem, head: dict[str, Any], run_id: str | None) -> ItemOutcome:
        """Stream the version, re-hash it and compare with the manifest and the object's own metadata."""
        where = f"cold object {item.object_key!r} version {item.cold_version_id}"
        metadata_sha = (head.get("Metadata") or {}).get(META_SHA256)
        started = time.monotonic()
        try:
            digest, size = stream_version(self.cold, self.cold_bucket, item.object_key, item.cold_version_id,
                                          chunk_size=self.settings.chunk_size)
        except Exception as exc:
            text, retryable = describe_s3_error(exc)
            if error_code(exc) == "InvalidObjectState":
                if item.state == "not_needed":
                    return self._record(item, "failed", run_id, error=(
                        f"{where}: the cold site refuses both RestoreObject and GetObject ({text})"))
                if not item.overdue:  # the restored copy expired between HEAD and GET
                    return self._send_restore(item, run_id, where, again=True)
            if retryable and not item.overdue:
                return self._record(item, item.state, run_id, detail=f"GET failed, will retry: {text}")
            return self._record(item, "failed", run_id, error=f"GET {where} failed: {text}")
        seconds = time.monotonic() - started
        computed = digest.hexdigest()
        problems = []
        if computed != item.expected_sha256:
            problems.append(f"SHA-256 of the bytes read {computed} != manifest {item.expected_sha256}")
        if metadata_sha != computed:
            problems.append(f"SHA-256 of the bytes read {computed} != {META_SHA256} metadata {metadata_sha!r}")
        if size != item.expected_size:
            problems.append(f"read {size} bytes, manifest says {item.expected_size}")
        state = "mismatch" if problems else "verified"
        error = f"{where}: " + "; ".join(problems) if problems else None
        return self._record(item, state, run_id, error=error, bytes_read=size, read_seconds=seconds,
                            computed_sha256=computed, metadata_sha256=metadata_sha, verified_at=True)

    # -- recording ------------------------------------------------------------------------------
    def _record(self, item: DrillItem, state: str, run_id: str | None, *, detail: str | None = None,
                error: str | None = None, restore_required: bool | None = None, checked: bool = True,
                restored_at: bool | None = None, bytes_read: int = 0, read_seconds: float = 0.0,
                computed_sha256: str | None = None, metadata_sha256: str | None = None,
                verified_at: bool | None = None) -> ItemOutcome:
        columns: dict[str, Any] = {}
        if detail is not None:
            columns["restore_status"] = detail[:2000]
        if error is not None:
            columns["error"] = error[:4000]
        elif state in PENDING_STATES and detail is not None and "will retry" in detail:
            columns["error"] = detail[:4000]
        if restore_required is not None:
            columns["restore_required"] = restore_required
        if restored_at:
            columns["restored_at"] = NOW
        if computed_sha256 is not None:
            columns.update(bytes_read=bytes_read, read_seconds=round(read_seconds, 6),
                           computed_sha256=computed_sha256, metadata_sha256=metadata_sha256)
        if verified_at:
            columns["verified_at"] = NOW
        if state == "verified":
            columns["error"] = None  # a transient error of an earlier pass is no longer the story
        self.db.update(item.id, state, run_id=run_id, checked=checked, **columns)
        if state in ("mismatch", "failed"):
            log.warning("restore drill %s: %s", state, error)
        return ItemOutcome(
            item_id=item.id, drill_id=item.drill_id, key=item.object_key, version_id=item.cold_version_id,
            state=state, detail=error or detail or "",
            restore_required=restore_required if restore_required is not None else item.restore_required,
            bytes_read=bytes_read, read_seconds=read_seconds, computed_sha256=computed_sha256,
        )
