"""The operator's restore of one version (`vault-pipeline restore KEY --to PATH`, cli/restore.py).

`resolve.py` has decided which version and what its bytes must hash to; `Retriever` checks the object's
own HEAD, requests a restore (or finds one in progress, or none needed), waits for it, then streams the
version to a temporary file next to the destination and renames it into place only if the SHA-256 and
the size match. A file that does not verify is removed: nothing unverified is ever left at the
destination.

Deep Archive cannot be read until a restore completes (Standard: within 12 h, Bulk: within 48 h), so a
run may end before the restore does; a rerun finds the restore in progress (`x-amz-restore`) and waits for
it instead of requesting another.

Plain Python: no Dagster here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from botocore.exceptions import BotoCoreError, ClientError, FlexibleChecksumError

from vault_pipeline.replication.errors import describe_s3_error
from vault_pipeline.replication.verify import META_SHA256, head_version, storage_class_of
from vault_pipeline.retrieval.cold import (
    ARCHIVE_CLASSES,
    TIERS,
    MiB,
    RestoreHeader,
    RestoreRequest,
    error_code,
    request_restore,
    stream_version,
)
from vault_pipeline.retrieval.errors import RetrievalError, RetrievalRefused, StillRestoring
from vault_pipeline.retrieval.resolve import Target

# What AWS promises, for the progress display.
EXPECTED_WAIT = {
    ("DEEP_ARCHIVE", "Standard"): "within 12 h", ("DEEP_ARCHIVE", "Bulk"): "within 48 h",
    ("GLACIER", "Expedited"): "1-5 min", ("GLACIER", "Standard"): "3-5 h", ("GLACIER", "Bulk"): "5-12 h",
}


@dataclass(frozen=True)
class RetrievalOptions:
    tier: str = "Standard"
    days: int = 7  # how long the restored copy stays readable (a rerun after a timeout needs it)
    poll_seconds: float = 60.0
    timeout_seconds: float | None = 72 * 3600.0  # None: wait as long as it takes
    chunk_size: int = MiB
    read_attempts: int = 4  # a broken stream resumes where it stopped (Range), at most this many times
    head_failures: int = 10  # consecutive failed HEADs while waiting before giving up

    def __post_init__(self) -> None:
        if self.tier not in TIERS:
            raise ValueError(f"restore tier must be one of {', '.join(TIERS)}, not {self.tier!r}")
        if not 1 <= self.days <= 30:
            raise ValueError("restore days must be between 1 and 30")
        if self.poll_seconds <= 0 or (self.timeout_seconds is not None and self.timeout_seconds < 0):
            raise ValueError("poll interval must be positive and the timeout not negative")


@dataclass
class Outcome:
    """What the retrieval did; `as_dict` is the command's --json output."""

    target: Target
    path: Path | None = None
    storage_class: str = ""
    metadata_sha256: str | None = None
    restore: str = ""  # requested | resumed | already_restored | not_archived | no_restore_on_server
    tier: str | None = None
    restore_header: str | None = None
    waited_seconds: float = 0.0
    read_seconds: float = 0.0
    bytes_read: int = 0
    sha256: str | None = None
    resumed_reads: int = 0
    checks: int = 0  # HEADs while waiting for the restore
    ongoing_answers: int = 0  # of which said the restore was still in progress
    verified: bool = False
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        t = self.target
        return {
            "key": t.key, "version_id": t.version_id, "current_version": t.current,
            "source_bucket": t.source_bucket, "cold_bucket": t.cold_bucket,
            "path": str(self.path) if self.path else None, "verified": self.verified,
            "size": self.bytes_read, "sha256": self.sha256,
            "expected": {"sha256": t.sha256, "size": t.size,
                         "tracking_db": {"sha256": t.db_sha256, "source": t.db_source},
                         "journal": {"sha256": t.journal.sha256, "seq": t.journal.seq, "segment": t.journal.segment,
                                     "found_via": t.journal.found_via},
                         "object_metadata": {META_SHA256: self.metadata_sha256}},
            "storage_class": self.storage_class, "restore": self.restore, "tier": self.tier,
            "restore_header": self.restore_header, "waited_seconds": round(self.waited_seconds, 3),
            "read_seconds": round(self.read_seconds, 3), "resumed_reads": self.resumed_reads,
            "checks": self.checks, "ongoing_answers": self.ongoing_answers,
            "problems": self.problems, "notes": list(t.notes),
            "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        }


Observer = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Retriever:
    """Restore one version from the cold site to a local file. `clock`/`sleep` are injectable for tests."""

    def __init__(self, client: Any, bucket: str, options: RetrievalOptions, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client, self.bucket, self.options = client, bucket, options
        self.clock, self.sleep = clock, sleep

    def _where(self, target: Target) -> str:
        return f"cold object {target.key!r} version {target.version_id}"

    def _head(self, target: Target) -> dict[str, Any]:
        head = head_version(self.client, self.bucket, target.key, target.version_id)
        if head is None:
            raise RetrievalError(f"{self._where(target)} is not on the cold site {self.bucket} (the tracking DB "
                                 "and the journal say it was written and locked: check the cold site settings, then "
                                 "run `vault-pipeline journal verify`)")
        return head

    def check(self, target: Target, outcome: Outcome) -> dict[str, Any]:
        """HEAD the version and compare it with the expectation before spending a restore on it."""
        head = self._head(target)
        outcome.storage_class = storage_class_of(head)
        outcome.metadata_sha256 = (head.get("Metadata") or {}).get(META_SHA256)
        problems = []
        if outcome.metadata_sha256 != target.sha256:
            problems.append(f"its {META_SHA256} metadata is {outcome.metadata_sha256!r}, the tracking DB and the "
                            f"journal say {target.sha256}")
        size = int(head.get("ContentLength", -1))
        if size != target.size:
            problems.append(f"it holds {size} bytes, the tracking DB and the journal say {target.size}")
        if problems:
            outcome.problems.extend(problems)
            raise RetrievalRefused(f"{self._where(target)}: {'; '.join(problems)}: refusing to restore")
        return head

    def wait_until_readable(self, target: Target, head: dict[str, Any], outcome: Outcome,
                            status: Observer = _quiet, event: Observer = _quiet) -> None:
        """Request the restore unless none is needed or one exists; poll HEAD until it completes. `event` hears
        what happens once (requested, resumed, complete...), `status` the periodic state of the wait."""
        storage_class = outcome.storage_class
        if storage_class not in ARCHIVE_CLASSES:
            outcome.restore = "not_archived"
            event(f"storage class {storage_class}: readable without a restore")
            return
        header = RestoreHeader.parse(head.get("Restore"))
        outcome.restore_header = header.raw if header else None
        if header is not None and not header.ongoing:
            outcome.restore = "already_restored"
            until = f" until {header.expiry:%Y-%m-%d %H:%M} UTC" if header.expiry else ""
            event(f"a restored copy exists already{until}: reading it")
            return
        tier = self.options.tier
        wait = EXPECTED_WAIT.get((storage_class, tier), "")
        if header is None:
            if storage_class == "DEEP_ARCHIVE" and tier == "Expedited":
                raise RetrievalError("Deep Archive has no Expedited tier: use --tier Standard (within 12 h) or "
                                     "--tier Bulk (within 48 h)")
            answer = self._request(target, tier)
            if answer.answer == "not_needed":
                outcome.restore = "no_restore_on_server"
                event(f"the cold site has no restore ({answer.refusal}): reading directly")
                return
            outcome.restore, outcome.tier = "requested", tier
            event(f"restore requested: tier {tier}, kept {self.options.days} day(s)"
                   + (f", expected {wait}" if wait else "")
                   + (" (the cold site says a restored copy exists)" if answer.answer == "restored" else ""))
        else:
            outcome.restore = "resumed"
            event("a restore requested earlier is in progress: waiting for it (not requested again)")
        started = self.clock()
        deadline = None if self.options.timeout_seconds is None else started + self.options.timeout_seconds
        re_requests, failures = 0, 0
        while True:
            now = self.clock()
            outcome.waited_seconds = now - started
            if deadline is not None and now >= deadline:
                raise StillRestoring(
                    f"the restore of {self._where(target)} is still in progress after "
                    f"{_duration(outcome.waited_seconds)} ({'tier ' + tier + ', ' if outcome.tier else ''}"
                    f"{('expected ' + wait) if wait else 'no estimate'}); rerun the same command to resume waiting "
                    "(the restore is not requested again)",
                    waited=outcome.waited_seconds, header=outcome.restore_header)
            pause = self.options.poll_seconds if deadline is None else min(self.options.poll_seconds, deadline - now)
            status(f"check(s), still restoring ({'tier ' + outcome.tier if outcome.tier else 'requested earlier'}"
                   + (f", expected {wait}" if wait and outcome.tier else "")
                   + f"), waited {_duration(now - started)}, next check in {_duration(pause)}")
            self.sleep(pause)
            try:
                head = self._head(target)
                failures = 0
            except RetrievalError:
                raise
            except (ClientError, BotoCoreError) as exc:
                text, retryable = describe_s3_error(exc)
                failures += 1
                if not retryable or failures >= self.options.head_failures:
                    raise
                event(f"HEAD failed ({text}); trying again")
                continue
            header = RestoreHeader.parse(head.get("Restore"))
            outcome.restore_header = header.raw if header else None
            outcome.checks += 1
            outcome.ongoing_answers += bool(header is not None and header.ongoing)
            if header is not None and not header.ongoing:
                outcome.waited_seconds = self.clock() - started
                event(f"restore complete after {_duration(outcome.waited_seconds)}: reading")
                return
            if header is None:  # the request was lost or its copy expired already: ask again, a few times
                re_requests += 1
                if re_requests > 3:
                    raise RetrievalError(f"the cold site accepted RestoreObject for {self._where(target)} "
                                         f"{re_requests} times but shows no restore in progress (x-amz-restore)")
                answer = self._request(target, tier)
                outcome.tier = outcome.tier or tier
                event(f"no restore in progress any more: requested again ({answer.answer})")

    def _request(self, target: Target, tier: str) -> RestoreRequest:
        try:
            return request_restore(self.client, self.bucket, target.key, target.version_id,
                                   days=self.options.days, tier=tier)
        except (ClientError, BotoCoreError) as exc:
            raise RetrievalError(f"RestoreObject (tier {tier}) on {self._where(target)} failed: "
                                 f"{describe_s3_error(exc)[0]}") from None

    def download(self, target: Target, destination: Path, outcome: Outcome, *, force: bool = False,
                 progress: Callable[[int], None] | None = None) -> None:
        """Stream the version to a temporary file beside `destination`, hashing it; fsync; move it into place
        only if it verifies (RetrievalRefused otherwise). The temporary file never survives a failure."""
        fd, temp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name[:64]}.",
                                         suffix=".restoring")
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                self._read_into(target, out, outcome, progress)
                out.flush()
                os.fsync(out.fileno())
            problems = []
            if outcome.sha256 != target.sha256:
                problems.append(f"SHA-256 of the bytes read {outcome.sha256} != {target.sha256} (tracking DB and "
                                "journal)")
            if outcome.bytes_read != target.size:
                problems.append(f"read {outcome.bytes_read} bytes, expected {target.size}")
            if problems:
                outcome.problems.extend(problems)
                raise RetrievalRefused(f"{self._where(target)} did not verify: {'; '.join(problems)}; nothing written "
                                       f"to {destination}")
            _place(temp, destination, force=force)
            outcome.path, outcome.verified = destination, True
        finally:
            temp.unlink(missing_ok=True)

    def _read_into(self, target: Target, out: Any, outcome: Outcome, progress: Callable[[int], None] | None) -> None:
        digest = hashlib.sha256()
        read = 0
        started = self.clock()

        def sink(chunk: bytes) -> None:
            nonlocal read
            out.write(chunk)
            read += len(chunk)
            if progress is not None:
                progress(len(chunk))

        attempts = 0
        while True:
            try:
                stream_version(self.client, self.bucket, target.key, target.version_id,
                               chunk_size=self.options.chunk_size, digest=digest, offset=read, sink=sink)
                break
            except ClientError as exc:
                if error_code(exc) == "InvalidObjectState":
                    raise RetrievalError(f"the cold site refuses GET of {self._where(target)} (InvalidObjectState): "
                                         "the restored copy expired or the restore is not complete; rerun") from None
                raise
            except FlexibleChecksumError as exc:
                raise RetrievalRefused(f"{self._where(target)}: the cold site's own checksum of the bytes it sent does "
                                       f"not match them ({exc})") from None
            except (BotoCoreError, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError):
                # A broken stream: resume where it stopped (the version id pins the bytes).
                attempts += 1
                if target.size and read >= target.size:
                    break  # everything arrived; the hash decides
                if attempts >= self.options.read_attempts:
                    raise
                outcome.resumed_reads += 1
        outcome.read_seconds = self.clock() - started
        outcome.bytes_read, outcome.sha256 = read, digest.hexdigest()


def _place(temp: Path, destination: Path, *, force: bool) -> None:
    """Move the verified file into place. Without `force` an existing destination is never replaced, even
    one that appeared while restoring (a hard link fails if the name exists; a plain check-then-rename
    where the filesystem has no hard links)."""
    if force:
        os.replace(temp, destination)
    else:
        try:
            os.link(temp, destination)
        except FileExistsError:
            raise RetrievalError(f"{destination} exists (it appeared while restoring): not replaced without "
                                 "--force") from None
        except OSError:
            if destination.exists() or destination.is_symlink():
                raise RetrievalError(f"{destination} exists: not replaced without --force") from None
            os.rename(temp, destination)
    directory = os.open(destination.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
