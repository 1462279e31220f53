"""One replication pass over a range of partition days.

Claims rows in small batches (so overlapping runs share the work), copies them on a thread pool,
retries each object with exponential backoff, and renews the leases of everything it holds from a
heartbeat thread. One object's failure never stops the others; the report lists every failure.

A shard (shards.py) claims the rows of its own slice first, then, when its slice is exhausted, any row of
the range (work stealing), so the runs sharing a day all finish it, whichever of them dies or lags.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from vault_pipeline.replication.copier import ObjectCopier
from vault_pipeline.replication.errors import (
    TRANSIENT_TYPES,
    CopyError,
    LeaseLost,
    SourceGone,
    describe_s3_error,
    is_internal_error,
)
from vault_pipeline.replication.shards import Shard
from vault_pipeline.replication.tracking import ClaimedRow, ReplicationOutcome, TrackingStore
from vault_pipeline.settings import setting_default

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSettings:
    concurrency: int = setting_default("concurrency")
    max_attempts: int = setting_default("max_attempts")
    retry_base_seconds: float = setting_default("retry_base_seconds")
    lease_seconds: float = setting_default("lease_seconds")
    claim_batch: int = 32


@dataclass(frozen=True)
class ObjectResult:
    key: str
    status: str  # replicated | adopted | failed | superseded | lost
    size: int
    attempts: int
    duration_s: float
    error: str | None = None
    document_type: str | None = None


@dataclass
class RunReport:
    first_day: dt.date
    last_day: dt.date
    results: list[ObjectResult] = field(default_factory=list)
    duration_s: float = 0.0
    aborted_uploads: int = 0
    stopped: str | None = None  # why the run stopped claiming early (lease renewal failed, a bug)
    shard: Shard | None = None
    # Rows this run worked on: of its shard's own slice, and taken from the other slices once its own was
    # exhausted (a run without a shard counts every row as its own).
    own_rows: int = 0
    stolen_rows: int = 0

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    def bytes(self, status: str) -> int:
        return sum(r.size for r in self.results if r.status == status)

    @property
    def failures(self) -> list[ObjectResult]:
        return [r for r in self.results if r.status == "failed"]


Progress = Callable[[ObjectResult], None]


class LeaseKeeper:
    """Renews this owner's leases every third of the lease time until stopped. A failed renewal sets
    `failed`: the engine then stops claiming (its rows may expire and be taken over; what it still copies is
    fenced by the lease before every irreversible write and before every record)."""

    def __init__(self, store: TrackingStore, owner: str, lease_seconds: float) -> None:
        self.store, self.owner, self.lease_seconds = store, owner, lease_seconds
        self.failed: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vault-lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                self.store.renew_leases(self.owner, self.lease_seconds)
            except Exception as exc:  # keep renewing what is in flight, but claim nothing more
                self.failed = self.failed or f"lease renewal failed: {type(exc).__name__}: {exc}"
                log.warning("lease renewal for %s failed: this run stops claiming", self.owner, exc_info=True)


class GroupCommitter:
    """Records finished copies in groups: whatever accumulated while the previous transaction committed
    goes into the next one (group commit), so many copies share one commit. `submit` does not wait: the
    copy worker moves on to the next object while its copy is recorded. A crash before the commit leaves a
    verified cold copy the database does not know; the next run's conditional first write is refused and
    the copy is adopted (tested by killing a worker there), so it is never copied twice nor lost."""

    def __init__(self, store: TrackingStore, owner: str, run_id: str | None, *, max_batch: int = 256,
                 max_pending: int = 2048, attempts: int = 3, linger_s: float = 0.05) -> None:
        self.store, self.owner, self.run_id, self.max_batch = store, owner, run_id, max_batch
        self.max_pending, self.attempts = max_pending, attempts
        # How long the first copy of a group waits for others before the group is written: a fast database
        # otherwise records copies one or two at a time, and a transaction's fixed cost (five statements and
        # a commit) then outweighs the copies' own requests. Workers never wait for it.
        self.linger_s = linger_s
        self._waiting: list[tuple[ClaimedRow, ReplicationOutcome, float, Future[str]]] = []
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="vault-commit", daemon=True)

    def __enter__(self) -> GroupCommitter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout=120)

    def submit(self, row: ClaimedRow, outcome: ReplicationOutcome, duration_s: float) -> Future[str]:
        """A future of the row's status once its copy is committed (see TrackingStore.mark_replicated).
        Blocks only while `max_pending` copies are already waiting (the database is slower than copying)."""
        done: Future[str] = Future()
        with self._cv:
            while len(self._waiting) >= self.max_pending and not self._closed:
                self._cv.wait()
            if self._closed:
                raise RuntimeError("the committer is closed")
            self._waiting.append((row, outcome, duration_s, done))
            if len(self._waiting) in (1, self.max_batch):  # the committer waits for a first copy or a full group
                self._cv.notify_all()
        return done

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._closed:
                    self._cv.wait()
                if not self._waiting:
                    return
                gathered = time.monotonic() + self.linger_s
                while len(self._waiting) < self.max_batch and not self._closed:
                    left = gathered - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
                batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
                self._cv.notify_all()  # room for blocked submitters
            copies = [(r, o, d) for r, o, d, _ in batch]
            for attempt in range(1, self.attempts + 1):
                try:
                    statuses = self.store.mark_replicated_many(copies, self.owner, run_id=self.run_id)
                except Exception as exc:  # a transaction: nothing of the batch was recorded; try again
                    if attempt < self.attempts:
                        log.warning("recording %d copies failed (attempt %d), retrying: %s", len(batch), attempt, exc)
                        time.sleep(0.5 * attempt)
                        continue
                    for *_, done in batch:
                        done.set_exception(exc)
                    break
                for (*_, done), status in zip(batch, statuses, strict=True):
                    done.set_result(status)
                break


@dataclass
class _Copied:
    """A verified copy whose row is being recorded."""

    row: ClaimedRow
    outcome: ReplicationOutcome
    attempts: int
    started: float
    recorded: Future[str]


def replicate_days(
    *,
    store: TrackingStore,
    copier: ObjectCopier,
    source_bucket: str,
    first_day: dt.date,
    last_day: dt.date,
    owner: str,
    run_id: str | None,
    settings: EngineSettings,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    shard: Shard | None = None,
) -> RunReport:
    started = time.monotonic()
    report = RunReport(first_day=first_day, last_day=last_day, shard=shard)
    since = store.db_now()
    lock = threading.Lock()
    stop: list[str] = []  # set once: claim nothing more (a bug was hit)

    def take_over(row: ClaimedRow) -> None:
        """Abort what the row's previous worker left open. Its recorded upload goes (that worker's lease on
        the row is over: we hold it); on a takeover from an expired lease, so does every other open upload
        of the key, except those of live workers writing the same cold key (their recorded upload ids, and
        all unrecorded ones while one of them has not recorded its id yet)."""
        try:
            aborted = int(bool(row.cold_upload_id) and copier.abort_upload(row.s3_key, row.cold_upload_id))
            if row.reclaimed:
                live, unrecorded_live = store.live_uploads(copier.cold_bucket, row.s3_key, row.id)
                aborted += copier.abort_uploads_for_key(row.s3_key, keep=live, keep_unknown=unrecorded_live)
            with lock:
                report.aborted_uploads += aborted
            store.record_upload_id(row.id, owner, None)
        except (CopyError, *TRANSIENT_TYPES) as exc:  # best effort: the copy goes on; a later takeover retries
            log.warning("could not abort stale uploads for %r: %s", row.s3_key, exc)

    def process(row: ClaimedRow) -> ObjectResult | _Copied:
        t0 = time.monotonic()
        with lock:  # counted when started: rows claimed but given back unstarted are not this run's work
            if shard is None or shard.owns(row.id):
                report.own_rows += 1
            else:
                report.stolen_rows += 1
        if row.cold_upload_id or row.reclaimed:  # its previous worker died or lost it, maybe mid-upload
            take_over(row)

        def on_upload(upload_id: str | None) -> None:
            if not store.record_upload_id(row.id, owner, upload_id) and upload_id is not None:
                raise LeaseLost(f"lost the lease on {row.s3_key!r} before recording upload {upload_id}")

        def fence() -> None:
            if not store.confirm_lease(row.id, owner, settings.lease_seconds):
                raise LeaseLost(f"lost the lease on {row.s3_key!r} before completing its upload")

        error: str | None = None
        attempt = 0
        gone = False
        for attempt in range(1, settings.max_attempts + 1):
            try:
                outcome = copier.replicate(
                    row.s3_key, listed_size=row.ovh_size, listed_etag=row.ovh_etag, on_upload=on_upload,
                    first_copy=row.aws_version_id is None, fence=fence,
                    live_uploads=lambda: store.live_uploads(copier.cold_bucket, row.s3_key, row.id),
                )
                return _Copied(row, outcome, attempt, t0, committer.submit(row, outcome, time.monotonic() - t0))
            except LeaseLost as exc:  # another worker holds the row now: write nothing about it
                log.warning("%s: left to the new owner", exc)
                return ObjectResult(row.s3_key, "lost", row.ovh_size, attempt, time.monotonic() - t0, str(exc))
            except CopyError as exc:
                error, retryable, gone = str(exc), exc.retryable, isinstance(exc, SourceGone)
                if exc.internal:
                    stop.append(f"internal error on {row.s3_key!r}: {exc}")
                    log.error("replication of %r hit a bug: %s", row.s3_key, exc)
            except Exception as exc:  # DB error or a bug: record it, never lose the row silently
                text, retryable = describe_s3_error(exc)
                if is_internal_error(exc):  # a bug is never retried as if it were transient
                    error = f"internal error (a bug, not retried): {text}"
                    stop.append(f"internal error on {row.s3_key!r}: {text}")
                else:
                    error = f"unexpected error: {text}"
                log.exception("replication of %r failed unexpectedly", row.s3_key)
            if not retryable or attempt == settings.max_attempts:
                break
            sleep(settings.retry_base_seconds * 2 ** (attempt - 1))
        assert error is not None
        if not store.mark_failed(row, owner, error=error, failed_attempts=attempt, run_id=run_id,
                                 source_bucket=source_bucket, source_gone=gone):
            return ObjectResult(row.s3_key, "lost", row.ovh_size, attempt, time.monotonic() - t0, error)
        return ObjectResult(row.s3_key, "failed", row.ovh_size, attempt, time.monotonic() - t0, error)

    def recorded(copied: _Copied) -> ObjectResult:
        duration = time.monotonic() - copied.started
        try:
            status = copied.recorded.result()
        except Exception as exc:
            # Copied and verified, but not recorded: the row goes back to be retried; the next attempt's
            # conditional write finds the copy and adopts it (no second copy).
            text, _ = describe_s3_error(exc)
            error = f"copied and verified (cold version {copied.outcome.cold_version_id}), but recording failed: {text}"
            try:
                if not store.mark_failed(copied.row, owner, error=error, failed_attempts=copied.attempts,
                                         run_id=run_id, source_bucket=source_bucket):
                    return ObjectResult(copied.row.s3_key, "lost", copied.row.ovh_size, copied.attempts, duration,
                                        error)
            except Exception:  # the database is gone: the lease expires and a later run adopts the copy
                log.exception("could not record the failure of %r either", copied.row.s3_key)
            return ObjectResult(copied.row.s3_key, "failed", copied.row.ovh_size, copied.attempts, duration,
                                error)
        return _result(copied.row, copied.outcome, status, copied.attempts, duration)

    def finish(result: ObjectResult) -> None:
        report.results.append(result)
        if progress:
            progress(result)

    committer = GroupCommitter(store, owner, run_id)
    # Rows stay claimed (and their leases renewed) until every copy has finished or been abandoned: the
    # pool is drained (running copies finish, queued ones are cancelled) and the committer has recorded
    # what finished; only then are the rows never started given back. Releasing earlier let another
    # run take a row whose copy was still running and abort its upload.
    keeper = LeaseKeeper(store, owner, settings.lease_seconds)
    with keeper:
        in_flight: set[Future[ObjectResult | _Copied]] = set()
        try:
            # Leaving this block drains the pool (running copies finish), then the committer records them.
            with committer, ThreadPoolExecutor(max_workers=settings.concurrency,
                                               thread_name_prefix="vault-copy") as pool:
                recording: list[_Copied] = []
                exhausted = False
                own_slice = shard  # a shard's own slice first; None once it is exhausted (or without a shard)
                try:
                    while True:
                        if keeper.failed or stop:  # renewal failing, or a bug: claim nothing more
                            exhausted = True
                        room = len(in_flight) < settings.concurrency * 2 and len(recording) < committer.max_pending
                        if not exhausted and room:
                            rows = store.claim(
                                owner=owner, source_bucket=source_bucket, first_day=first_day, last_day=last_day,
                                limit=settings.claim_batch, lease_seconds=settings.lease_seconds,
                                not_attempted_since=since, own_slice=own_slice,
                                steal=shard is not None and own_slice is None,
                            )
                            if not rows and own_slice is not None:
                                log.info("shard %s: own slice done, helping with the rest of the days", shard)
                                own_slice = None
                                continue  # claim again at once, from the other slices
                            exhausted = not rows
                            in_flight.update(pool.submit(process, row) for row in rows)
                        if not in_flight and not recording:
                            break
                        waited: set[Future] = {*in_flight, *(c.recorded for c in recording)}
                        done, _ = wait(waited, timeout=1.0, return_when=FIRST_COMPLETED)
                        for future in done & in_flight:
                            in_flight.discard(future)
                            item = future.result()
                            if isinstance(item, _Copied):
                                recording.append(item)
                            else:
                                finish(item)
                        still: list[_Copied] = []
                        for copied in recording:
                            if copied.recorded.done():
                                finish(recorded(copied))
                            else:
                                still.append(copied)
                        recording = still
                finally:
                    for future in in_flight:
                        future.cancel()  # not started yet: released below
        finally:
            store.release(owner)  # rows claimed but never started (or abandoned) go back to pending at once
    report.stopped = keeper.failed or (stop[0] if stop else None)
    report.duration_s = time.monotonic() - started
    return report


def _result(row: ClaimedRow, outcome: ReplicationOutcome, status: str, attempts: int,
            duration: float) -> ObjectResult:
    if status == "replicated":
        status = "adopted" if outcome.adopted else "replicated"
    elif status == "pending":
        status = "superseded"  # copied fine, but the source changed again meanwhile
    return ObjectResult(row.s3_key, status, outcome.file_size, attempts, duration,
                        document_type=outcome.document_type)
