"""SFTP inbox -> hot site: the files the inbox sensor registered, transferred by a pool of workers.

Each worker thread claims one file at a time from vault_secure.file_transfer_log (leases renewed while it
works, so a file is never transferred by two workers and a dead worker's file is taken over once its lease
runs out) and, on a persistent SFTP session of the pool:

1. lstat: the file must be the regular file registered (same size and mtime). A symlink, a directory or a
   device is never followed; a file changed since it looked stable is left for the sensor to register again.
2. download: the bytes are streamed and hashed (SHA-256) as they come. A small file is held in memory (at
   most the multipart threshold); a large one goes to a spool file (VAULT_SPOOL_DIR) when the budget and the
   disk allow, its per-part SHA-256 computed on the way. A dropped connection is resumed where it stopped
   on a new session, once the file is seen unchanged.
3. upload: PutObject, or a multipart upload whose parts carry their SHA-256 (the hot site refuses a part
   whose bytes differ: a large file re-read from SFTP, without a spool, is checked against pass 1). The hot
   object carries the intake's hash as user metadata `intake-sha256`, which the copy to the cold site
   checks end to end (replication/copier.py), plus `intake-source` and `document-type`. An upload that fails
   is aborted; an upload a killed worker left open is aborted by the next attempt.
4. verify: the hot site checked the SHA-256 sent with every request and returns the object's checksum in
   its answer; where it does not (or around midnight UTC, where the day of the registration must be the
   object's LastModified's), a HEAD (checksum mode) must give the size, the intake hash and the checksum of
   what was sent. The object is then registered in replication_status, so the replication path takes it
   from there.
5. only then the source is moved to the processed folder, deleted or kept (SFTP_AFTER_TRANSFER), after a
   last lstat that it is still the file transferred.

A crash at any point is safe: before step 4 the file is transferred again by the next attempt; after step
5 the next attempt finds the verified hot object of that delivery and records the file COMPLETED.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import logging
import mimetypes
import os
import shutil
import tempfile
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from vault_pipeline.intake.sftp_client import (
    RemoteEntry,
    SftpConnectionLost,
    SftpError,
    SftpFileError,
    SftpPool,
    SftpRefused,
    SftpSession,
    SftpUnavailable,
    join,
)
from vault_pipeline.intake.sftp_paths import DocumentTypeRule, hot_key, key_problem
from vault_pipeline.replication.checksums import ExpectedChecksum, b64
from vault_pipeline.replication.errors import describe_s3_error
from vault_pipeline.replication.inventory import ListedObject, strip_etag
from vault_pipeline.replication.spool import SPOOL_BUDGET, SPOOL_FREE_MARGIN, PartHasher, SpoolFile
from vault_pipeline.replication.tracking.file_transfers import ClaimedFile, TransferLog, TransferResult
from vault_pipeline.replication.verify import META_INTAKE_SHA256
from vault_pipeline.settings import setting_default

log = logging.getLogger(__name__)

MiB = 1024 * 1024
META_INTAKE_SOURCE = "intake-source"
META_INTAKE_MTIME = "intake-mtime"
META_DOCUMENT_TYPE = "document-type"
AFTER_TRANSFER = ("move", "delete", "keep")


MIDNIGHT_MARGIN_S = 300  # around 00:00 UTC an upload is verified with a HEAD (its LastModified's day)
CLAIM_BATCH = 8  # files a worker claims at once (small ones: see TransferLog.claim_files' max_bytes)
RECORD_BATCH = 16  # files a worker completes in one statement


@dataclass(frozen=True)
class Transferred:
    """A file on the hot site, verified, its source moved (or deleted or kept): what is left to record."""

    result: TransferResult
    listed: ListedObject  # to register in replication_status
    ended: dt.datetime


@dataclass(frozen=True)
class Prefetch:
    """A small file's read (lstat, open, read, close) started on a session while the worker uploads the file
    before it: SFTP download and S3 upload overlap in each worker."""

    session: SftpSession
    future: Future[tuple[RemoteEntry, bytes]]


class FileRefused(Exception):
    """This delivery cannot be transferred as it is; `retryable` says whether another attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class TransferSettings:
    inbox_id: str
    remote_dir: str
    hot_prefix: str
    after_transfer: str
    processed_dir: str  # absolute on the server, or relative to remote_dir
    document_types: DocumentTypeRule
    multipart_threshold: int
    part_size: int
    part_concurrency: int
    max_workers: int
    lease_seconds: float
    max_attempts: int
    retry_after_seconds: float = setting_default("sftp_retry_after_seconds")
    chunk_size: int = 4 * MiB  # one SFTP read request of the stream (asyncssh splits it into parallel reads)
    reconnects: int = 3  # dropped connections resumed per file
    spool_dir: str | None = None
    spool_max_bytes: int = setting_default("spool_max_mb") * MiB

    @property
    def processed_path(self) -> str:
        return self.processed_dir if self.processed_dir.startswith("/") else join(self.remote_dir, self.processed_dir)


@dataclass(frozen=True)
class FileOutcome:
    filename: str
    status: str  # COMPLETED | FAILED | RELEASED (given back untouched: the run stopped)
    size: int
    download_seconds: float = 0.0
    upload_seconds: float = 0.0
    total_seconds: float = 0.0
    hot_key: str | None = None
    error: str | None = None
    note: str | None = None


@dataclass
class TransferReport:
    outcomes: list[FileOutcome] = field(default_factory=list)
    wall_seconds: float = 0.0
    connections_opened: int = 0
    connections_lost: int = 0
    stopped: str | None = None  # why the run stopped before the inbox's claimable files were done

    def of(self, status: str) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def completed_bytes(self) -> int:
        return sum(o.size for o in self.of("COMPLETED"))

    def phase_seconds(self, phase: str) -> float:
        return sum(getattr(o, f"{phase}_seconds") for o in self.of("COMPLETED"))

    @property
    def mb_per_second(self) -> float:
        return self.completed_bytes / MiB / self.wall_seconds if self.wall_seconds > 0 else 0.0


class _Download:
    """Where a file's bytes go during pass 1: memory (small), a spool file or nowhere (large: re-read)."""

    def __init__(self, size: int, settings: TransferSettings) -> None:
        self.size, self.whole = size, hashlib.sha256()
        self.small = size <= settings.multipart_threshold
        self.memory = bytearray() if self.small else None
        self.parts = None if self.small else PartHasher(settings.part_size)
        self.spool: SpoolFile | None = None
        self._reserved = 0
        if not self.small and settings.spool_max_bytes > 0 and SPOOL_BUDGET.reserve(size, settings.spool_max_bytes):
            self._reserved = size
            directory = settings.spool_dir or tempfile.gettempdir()
            try:
                if shutil.disk_usage(directory).free < size + SPOOL_FREE_MARGIN:
                    raise OSError(f"not enough free space in {directory}")
                self.spool = SpoolFile(directory, size)
            except OSError as exc:
                log.info("no spool file for a %d-byte file (%s): its parts are read again over SFTP", size, exc)

    def consume(self, chunk: bytes) -> None:
        self.whole.update(chunk)
        if self.memory is not None:
            self.memory += chunk
        if self.parts is not None:
            self.parts.update(chunk)
        if self.spool is not None:
            try:
                self.spool.write(chunk)
            except OSError as exc:
                log.warning("spool file abandoned (%s): parts are read again over SFTP", exc)
                self.spool.close()
                self.spool = None

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None
        if self._reserved:
            SPOOL_BUDGET.release(self._reserved)
            self._reserved = 0


class SftpTransfer:
    """Transfers the claimable files of one inbox to the hot site, `settings.max_workers` at a time."""

    def __init__(self, *, pool: SftpPool, transfer_log: TransferLog,
                 register: Callable[[list[ListedObject]], None],
                 hot: Any, hot_bucket: str, settings: TransferSettings, owner: str) -> None:
        self.pool, self.log, self.register = pool, transfer_log, register
        self.hot, self.hot_bucket, self.settings, self.owner = hot, hot_bucket, settings, owner
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._made_dirs: set[str] = set()

    # -- the run ---------------------------------------------------------------------------------------
    def run(self, *, max_files: int | None = None,
            progress: Callable[[FileOutcome], None] | None = None) -> TransferReport:
        report = TransferReport()
        started = time.monotonic()
        owners = [f"{self.owner}/{i}" for i in range(self.settings.max_workers)]
        claimed_total = 0

        def take(owner: str) -> list[ClaimedFile]:
            nonlocal claimed_total
            with self._lock:
                if self._stop.is_set() or (max_files is not None and claimed_total >= max_files):
                    return []
                limit = CLAIM_BATCH if max_files is None else min(CLAIM_BATCH, max_files - claimed_total)
                claimed_total += limit  # reserved; what the claim did not find is given back below
            found = self.log.claim_files(
                self.settings.inbox_id, owner=owner, limit=limit, lease_seconds=self.settings.lease_seconds,
                max_attempts=self.settings.max_attempts, retry_after_seconds=self.settings.retry_after_seconds,
                max_bytes=self.settings.multipart_threshold)
            with self._lock:
                claimed_total -= limit - len(found)
            return found

        def record(outcome: FileOutcome) -> None:
            with self._lock:
                report.outcomes.append(outcome)
            if progress is not None:
                progress(outcome)

        def worker(owner: str) -> None:
            queue: deque[ClaimedFile] = deque()
            done: list[tuple[ClaimedFile, Transferred]] = []
            ahead: dict[int, Prefetch] = {}

            def read_next() -> None:  # called once the current file is read: the next one is read meanwhile
                if queue and queue[0].size <= self.settings.multipart_threshold and not self._stop.is_set():
                    ahead[queue[0].id] = self._prefetch(queue[0])

            try:
                while not self._stop.is_set():
                    if not queue:
                        self._record_done(owner, done, record)
                        queue.extend(take(owner))
                        if not queue:
                            break
                    claimed = queue.popleft()
                    outcome = self._transfer_or_fail(claimed, owner, report, ahead.pop(claimed.id, None), read_next)
                    if isinstance(outcome, FileOutcome):
                        record(outcome)
                    else:
                        done.append((claimed, outcome))
                        if len(done) >= RECORD_BATCH:
                            self._record_done(owner, done, record)
            finally:
                self._record_done(owner, done, record)

        renewer = threading.Thread(target=self._renew_leases, args=(owners,), name="sftp-lease-renewer", daemon=True)
        renewer.start()
        try:
            with ThreadPoolExecutor(max_workers=self.settings.max_workers, thread_name_prefix="sftp-transfer") as pool:
                for future in [pool.submit(worker, owner) for owner in owners]:
                    future.result()
        finally:
            self._stop.set()
            renewer.join(timeout=5)
            for owner in owners:  # anything claimed and not finished (a stop) goes back to PENDING
                self.log.release_files(owner)
        report.wall_seconds = time.monotonic() - started
        report.connections_opened = self.pool.connections_opened
        report.connections_lost = self.pool.connections_lost
        return report

    def _record_done(self, owner: str, done: list[tuple[ClaimedFile, Transferred]],
                     record: Callable[[FileOutcome], None]) -> None:
        """Register the verified hot objects, then mark their files COMPLETED: two statements for a batch of
        files. A crash before this is safe: the files' leases run out and the next attempt finds each one
        transferred (moved: recovered from its hot object; still in the inbox: sent again, the same bytes)."""
        if not done:
            return
        self.register([t.listed for _, t in done])
        recorded = self.log.complete_files([(c.id, owner, t.result, t.ended) for c, t in done])
        for claimed, transferred in done:
            if claimed.id not in recorded:
                log.warning("%r was transferred but its lease had passed to another worker, which records it",
                            claimed.filename)
            r = transferred.result
            record(FileOutcome(claimed.filename, "COMPLETED", claimed.size, r.download_seconds, r.upload_seconds,
                               r.total_seconds, r.hot_key, note=r.note))
        done.clear()

    def _renew_leases(self, owners: list[str]) -> None:
        period = max(1.0, self.settings.lease_seconds / 3)
        while not self._stop.wait(period):
            for owner in owners:
                try:
                    self.log.renew_file_leases(owner, self.settings.lease_seconds)
                except Exception as exc:  # a missed renewal only shortens the lease; logged
                    log.warning("renewing the SFTP transfer leases of %s failed: %s", owner, exc)

    def _transfer_or_fail(self, claimed: ClaimedFile, owner: str, report: TransferReport,
                          prefetched: Prefetch | None = None,
                          downloaded: Callable[[], None] | None = None) -> Transferred | FileOutcome:
        """The file transferred, or its failure recorded (FAILED; RELEASED when the server cannot be used)."""
        started = time.monotonic()
        try:
            return self.transfer(claimed, prefetched=prefetched, downloaded=downloaded)
        except SftpUnavailable as exc:  # not this file's fault: it goes back to PENDING, the run stops
            with self._lock:
                report.stopped = report.stopped or str(exc)
            self._stop.set()
            return FileOutcome(claimed.filename, "RELEASED", claimed.size, error=str(exc))
        except FileRefused as exc:
            return self._failed(claimed, owner, str(exc), started, retryable=exc.retryable)
        except SftpError as exc:
            return self._failed(claimed, owner, str(exc), started, retryable=True)
        except Exception as exc:  # one file's failure is recorded, never the run's end
            text = describe_s3_error(exc)[0] if hasattr(exc, "response") else f"{type(exc).__name__}: {exc}"
            return self._failed(claimed, owner, text, started, retryable=True)

    def _failed(self, claimed: ClaimedFile, owner: str, error: str, started: float, *,
                retryable: bool) -> FileOutcome:
        total = time.monotonic() - started
        if retryable and claimed.attempts >= self.settings.max_attempts:
            error += (f" (attempt {claimed.attempts} of {self.settings.max_attempts}, the last: once the cause is "
                      "fixed, deliver the file again or touch it, and it is transferred as a new delivery)")
        elif retryable:
            error += f" (attempt {claimed.attempts} of {self.settings.max_attempts}, retried)"
        self.log.fail_file(claimed.id, owner, error, total_seconds=total, retryable=retryable)
        log.warning("SFTP transfer of %r failed (attempt %d%s): %s", claimed.filename, claimed.attempts,
                    "" if retryable else ", not retried", error)
        return FileOutcome(claimed.filename, "FAILED", claimed.size, total_seconds=total, error=error)

    # -- one file --------------------------------------------------------------------------------------
    def _prefetch(self, claimed: ClaimedFile) -> Prefetch | None:
        path = join(self.settings.remote_dir, claimed.filename)
        try:
            with self.pool.session() as session:
                return Prefetch(session, session.start_read_whole(path, claimed.size))
        except SftpError:  # no session now: the file is read when its turn comes, and fails there if it must
            return None

    def transfer(self, claimed: ClaimedFile, *, prefetched: Prefetch | None = None,
                 downloaded: Callable[[], None] | None = None) -> Transferred:
        """One claimed file onto the hot site, verified, then moved, deleted or kept. Nothing is recorded: the
        caller registers the hot object and completes the file (run() does it for a batch of files).
        `prefetched`: its read, started earlier; `downloaded`: called once its bytes are in (to start the next
        file's read while this one is uploaded)."""
        s = self.settings
        started = time.monotonic()
        path = join(s.remote_dir, claimed.filename)
        key = hot_key(s.hot_prefix, claimed.filename)
        problem = key_problem(key)
        if problem:
            raise FileRefused(f"{claimed.filename!r} cannot become a hot object: {problem}", retryable=False)
        download = _Download(claimed.size, s)
        try:
            download_started = time.monotonic()
            entry = self._download(claimed, path, download, prefetched)
            if downloaded is not None:
                downloaded()
            if entry is None:  # gone from the inbox: transferred by an earlier attempt that died, or removed
                recovered = self._recover(claimed, key, started)
                if recovered is not None:
                    return recovered
                raise FileRefused(f"{claimed.filename!r} is no longer in the inbox (removed or renamed by someone "
                                  "else before its transfer); nothing was transferred", retryable=False)
            download_seconds = time.monotonic() - download_started
            sha_hex = download.whole.hexdigest()
            document_type = s.document_types.type_of(claimed.filename)
            metadata = {
                META_INTAKE_SHA256: sha_hex,
                META_INTAKE_SOURCE: urllib.parse.quote(f"{s.inbox_id}/{claimed.filename}", safe=":/@"),
                META_INTAKE_MTIME: claimed.mtime.isoformat(),
                META_DOCUMENT_TYPE: document_type,
            }
            content_type = mimetypes.guess_type(claimed.filename)[0] or "application/octet-stream"
            upload_started = time.monotonic()
            if download.small:
                assert download.memory is not None
                expected = ExpectedChecksum.full(download.whole.digest())
                response = self.hot.put_object(Bucket=self.hot_bucket, Key=key, Body=bytes(download.memory),
                                               ChecksumSHA256=expected.value, Metadata=metadata,
                                               ContentType=content_type)
            else:
                assert download.parts is not None
                digests = download.parts.finish()
                expected = ExpectedChecksum.composite(digests)
                response = self._multipart(claimed, path, key, metadata, content_type, digests, download)
            head = self._receipt(response, expected) or self._verify(key, claimed.size, sha_hex, expected,
                                                                     response.get("VersionId"))
            upload_seconds = time.monotonic() - upload_started
        finally:
            download.close()
        after, note = self._after_transfer(claimed, path)
        result = TransferResult(
            hot_bucket=self.hot_bucket, hot_key=key, hot_etag=strip_etag(head.get("ETag")),
            hot_version_id=head.get("VersionId") if head.get("VersionId") not in (None, "null") else None,
            sha256=sha_hex, document_type=document_type, download_seconds=download_seconds,
            upload_seconds=upload_seconds, total_seconds=time.monotonic() - started, after_transfer=after, note=note)
        listed = ListedObject(key, result.hot_etag, claimed.size, head["LastModified"].astimezone(dt.UTC))
        return Transferred(result, listed, dt.datetime.now(dt.UTC))

    def _check_entry(self, claimed: ClaimedFile, entry: RemoteEntry) -> None:
        if entry.kind != "file":
            raise FileRefused(f"{claimed.filename!r} is a {entry.kind}, not a regular file: never followed",
                              retryable=False)
        self._same_look(claimed, entry.size, entry.mtime, "before its transfer")

    @staticmethod
    def _same_look(claimed: ClaimedFile, size: int, mtime: dt.datetime, when: str) -> None:
        if (size, mtime) != (claimed.size, claimed.mtime):
            raise FileRefused(
                f"{claimed.filename!r} changed {when} (size {claimed.size} -> {size}, mtime "
                f"{claimed.mtime.isoformat()} -> {mtime.isoformat()}): still being written? It is transferred "
                "once it is stable again", retryable=False)

    def _download(self, claimed: ClaimedFile, path: str, download: _Download,
                  prefetched: Prefetch | None = None) -> RemoteEntry | None:
        """Pass 1: the file checked (lstat: the regular file registered), then every byte through `download`,
        resumed on a new session after a dropped connection. A small file is read in one hop to the SFTP
        event loop, lstat included. None when the file is not in the inbox at all."""
        offset, lost, entry = 0, 0, None
        while True:
            try:
                if download.small and prefetched is not None:  # read while the file before was uploaded
                    ahead, prefetched = prefetched, None
                    entry, data = ahead.session.wait(ahead.future, path)
                    self._check_entry(claimed, entry)
                    download.consume(data)
                    offset = len(data)
                    break
                with self.pool.session() as session:
                    if download.small and offset == 0:
                        entry, data = session.read_whole(path, claimed.size)
                        self._check_entry(claimed, entry)
                        download.consume(data)
                        offset = len(data)
                        break
                    entry = session.lstat(path)
                    self._check_entry(claimed, entry)  # resuming: only where the file is still the one registered
                    # Up to the registered size: a file that grows meanwhile is caught by the lstat before its
                    # move, which leaves it in the inbox to be registered again as a new delivery.
                    for chunk in session.read_chunks(path, offset, self.settings.chunk_size, end=claimed.size):
                        download.consume(chunk)
                        offset += len(chunk)
                break
            except SftpRefused:
                raise  # a host key or a login refused: the run stops, no retry
            except (SftpConnectionLost, SftpUnavailable) as exc:
                if isinstance(exc, SftpUnavailable) and not lost:
                    raise  # the server could not be reached at all: the run stops
                lost += 1
                self._after_drop(lost, exc, f"{claimed.filename!r}: {offset} of {claimed.size} bytes read")
            except SftpFileError as exc:
                if not exc.missing:
                    raise
                if entry is None:
                    return None
                raise FileRefused(f"{claimed.filename!r} vanished during its transfer after {offset} of "
                                  f"{claimed.size} bytes: nothing was uploaded", retryable=False) from exc
        if offset != claimed.size:
            raise FileRefused(f"{claimed.filename!r} changed during its transfer: read {offset} bytes, "
                              f"registered {claimed.size}; nothing was uploaded", retryable=False)
        return entry

    def _after_drop(self, lost: int, exc: SftpError, where: str) -> None:
        """After the `lost`-th dropped connection of one read: give up past the settings' reconnects, else wait (0.5 s
        doubled each time, at most 8 s) before the caller reads on a new connection."""
        if lost > self.settings.reconnects:
            raise SftpConnectionLost(f"{where}: gave up after {lost} dropped connection(s): {exc}") from exc
        log.warning("SFTP read interrupted (%s; %s): going on on a new connection", where, exc)
        time.sleep(min(8.0, 0.5 * 2 ** lost))

    def _read_range(self, claimed: ClaimedFile, path: str, start: int, length: int) -> bytes:
        """A part read again over SFTP (no spool file): on a new session after a dropped connection, the part
        from its start again (the caller checks it against pass 1's digest)."""
        lost = 0
        while True:
            data = bytearray()
            try:
                with self.pool.session() as session:
                    for chunk in session.read_chunks(path, start, self.settings.chunk_size, end=start + length):
                        data += chunk
                return bytes(data[:length])
            except SftpRefused:
                raise
            except (SftpConnectionLost, SftpUnavailable) as exc:
                lost += 1
                self._after_drop(lost, exc, f"{claimed.filename!r}: bytes {start}-{start + length} read again")
            except SftpFileError as exc:
                if exc.missing:
                    raise FileRefused(f"{claimed.filename!r} vanished during its transfer, before its parts were "
                                      "read again (no spool file): the upload was aborted, nothing was uploaded",
                                      retryable=False) from exc
                raise

    def _multipart(self, claimed: ClaimedFile, path: str, key: str, metadata: dict[str, str], content_type: str,
                   digests: list[bytes], download: _Download) -> dict[str, Any]:
        s = self.settings
        self._abort_stale_uploads(key)
        created = self.hot.create_multipart_upload(Bucket=self.hot_bucket, Key=key, Metadata=metadata,
                                                   ContentType=content_type, ChecksumAlgorithm="SHA256")
        upload_id = created["UploadId"]
        spool = download.spool if download.spool is not None and download.spool.written == claimed.size else None

        streamed = getattr(self.hot, "upload_part_streamed", None)

        def send(number: int) -> dict[str, Any]:
            start = (number - 1) * s.part_size
            length = min(s.part_size, claimed.size - start)
            checksum = b64(digests[number - 1])
            if spool is not None and streamed is not None:  # from our own spool, in 1 MiB chunks, never whole
                answer = streamed(Bucket=self.hot_bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                  ChecksumSHA256=checksum, length=length,
                                  open_body=lambda: spool.chunks(start, length))
            else:
                body = spool.read(start, length) if spool is not None else self._read_range(claimed, path, start,
                                                                                            length)
                if spool is None and hashlib.sha256(body).digest() != digests[number - 1]:
                    raise FileRefused(f"{claimed.filename!r} changed during its transfer: part {number} read again "
                                      "differs from the first read; the upload was aborted", retryable=False)
                answer = self.hot.upload_part(Bucket=self.hot_bucket, Key=key, UploadId=upload_id,
                                              PartNumber=number, Body=body, ChecksumSHA256=checksum)
            # Either way the part's SHA-256 travels with it, and the hot site refuses bytes that differ.
            return {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum}

        try:
            with ThreadPoolExecutor(max_workers=s.part_concurrency, thread_name_prefix="sftp-part") as parts:
                sent = list(parts.map(send, range(1, len(digests) + 1)))
            return self.hot.complete_multipart_upload(Bucket=self.hot_bucket, Key=key, UploadId=upload_id,
                                                      MultipartUpload={"Parts": sent})
        except BaseException:
            try:
                self.hot.abort_multipart_upload(Bucket=self.hot_bucket, Key=key, UploadId=upload_id)
            except Exception as exc:  # the next attempt aborts it (_abort_stale_uploads)
                log.warning("abort of the hot upload %s of %r failed: %s", upload_id, key, exc)
            raise

    def _abort_stale_uploads(self, key: str) -> None:
        """Uploads of this key left open by a worker that died: the claim says no one else is writing it."""
        listed = self.hot.list_multipart_uploads(Bucket=self.hot_bucket, Prefix=key)
        for upload in listed.get("Uploads", []):
            if upload.get("Key") == key:
                self.hot.abort_multipart_upload(Bucket=self.hot_bucket, Key=key, UploadId=upload["UploadId"])
                log.info("aborted the hot upload %s of %r left open by an earlier attempt", upload["UploadId"], key)

    @staticmethod
    def _receipt(response: dict[str, Any], expected: ExpectedChecksum) -> dict[str, Any] | None:
        """The upload's own answer as its verification, when it can be: the hot site checked the SHA-256 we sent
        (S3 refuses a body that does not match it) and says so by returning the same checksum, for the very
        bytes and metadata of that request; the object's LastModified is the answer's Date. None (a HEAD is
        needed) when the site returns no checksum, or near midnight UTC, where the Date and the LastModified
        could fall on two days and register the document under the wrong partition."""
        reported = response.get("ChecksumSHA256")
        if not reported or expected.mismatch(reported) or not response.get("ETag"):
            return None
        raw = ((response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}).get("date")
        try:
            answered = email.utils.parsedate_to_datetime(raw).astimezone(dt.UTC) if raw else None
        except (TypeError, ValueError):
            answered = None
        if answered is None:
            return None
        seconds_into_day = answered.hour * 3600 + answered.minute * 60 + answered.second
        if seconds_into_day < MIDNIGHT_MARGIN_S or seconds_into_day > 86400 - MIDNIGHT_MARGIN_S:
            return None
        return {"ETag": response["ETag"], "VersionId": response.get("VersionId"), "LastModified": answered}

    def _verify(self, key: str, size: int, sha_hex: str, expected: ExpectedChecksum,
                version_id: str | None) -> dict[str, Any]:
        args: dict[str, Any] = {"Bucket": self.hot_bucket, "Key": key, "ChecksumMode": "ENABLED"}
        if version_id and version_id != "null":
            args["VersionId"] = version_id
        head = self.hot.head_object(**args)
        problems = []
        if int(head["ContentLength"]) != size:
            problems.append(f"size {head['ContentLength']} != {size}")
        found = (head.get("Metadata") or {}).get(META_INTAKE_SHA256)
        if found != sha_hex:
            problems.append(f"metadata {META_INTAKE_SHA256}={found!r} != {sha_hex}")
        reported = head.get("ChecksumSHA256")
        if reported:  # a site that keeps checksums says what it received
            mismatch = expected.mismatch(reported)
            if mismatch:
                problems.append(mismatch.replace("cold", "hot"))
        if problems:
            raise FileRefused(f"hot object {key!r} failed its verification after upload: {'; '.join(problems)}; the "
                              "source file is kept", retryable=True)
        return head

    def _recover(self, claimed: ClaimedFile, key: str, started: float) -> Transferred | None:
        """A file gone from the inbox on a later attempt: did an earlier attempt finish (hot object verified,
        source moved or deleted) and die before recording it? Then the hot object of this very delivery is
        there, with the intake's hash."""
        if claimed.attempts <= 1:
            return None
        try:
            head = self.hot.head_object(Bucket=self.hot_bucket, Key=key)
        except Exception:  # no object (or no answer): nothing to recover, the caller says why
            return None
        metadata = head.get("Metadata") or {}
        sha_hex = metadata.get(META_INTAKE_SHA256, "")
        if (int(head["ContentLength"]) != claimed.size or metadata.get(META_INTAKE_MTIME) != claimed.mtime.isoformat()
                or len(sha_hex) != 64):
            return None
        after = {"move": "moved", "delete": "deleted"}.get(self.settings.after_transfer, "kept")
        result = TransferResult(
            hot_bucket=self.hot_bucket, hot_key=key, hot_etag=strip_etag(head.get("ETag")),
            hot_version_id=head.get("VersionId") if head.get("VersionId") not in (None, "null") else None,
            sha256=sha_hex, document_type=metadata.get(META_DOCUMENT_TYPE, self.settings.document_types.default),
            download_seconds=0.0, upload_seconds=0.0, total_seconds=time.monotonic() - started, after_transfer=after,
            note="recovered: an earlier attempt transferred and verified this file, then stopped before recording it")
        listed = ListedObject(key, result.hot_etag, claimed.size, head["LastModified"].astimezone(dt.UTC))
        return Transferred(result, listed, dt.datetime.now(dt.UTC))

    def _after_transfer(self, claimed: ClaimedFile, path: str) -> tuple[str, str | None]:
        """Move, delete or keep the source, now that its hot object is verified: in one hop, after an lstat
        that it is still the file transferred. A failure here keeps the file (the transfer itself succeeded)
        and says why."""
        mode = self.settings.after_transfer
        if mode == "keep":
            return "kept", None
        target = join(self.settings.processed_path, claimed.filename) if mode == "move" else None
        try:
            with self.pool.session() as session:
                if target is not None:
                    folder = os.path.dirname(target) or "."
                    if folder not in self._made_dirs:  # once per folder and run: a drop of 10,000 files shares a few
                        session.makedirs(folder)
                        self._made_dirs.add(folder)
                try:
                    done, final = session.move_or_remove(path, (claimed.size, claimed.mtime), target)
                except SftpFileError as exc:
                    if not exc.missing:
                        raise
                    return "kept", ("transferred and verified, then the source was no longer in the inbox (removed "
                                    "or renamed by someone else during its transfer): nothing to move or delete")
        except SftpError as exc:
            action = "delete" if mode == "delete" else f"move to {self.settings.processed_path}"
            return "kept", f"transferred and verified, but {action} failed: {exc}; the file is still in the inbox"
        if done == "changed":
            return "kept", ("the source changed after its transfer: kept in the inbox, where it is registered again "
                            "as a new delivery")
        if done == "removed":
            return "deleted", None
        if final != target:
            return "moved", f"an earlier delivery is already in the processed folder: moved to {final!r}"
        return "moved", None
