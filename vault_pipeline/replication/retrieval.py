"""Getting a document's bytes back from the cold site: one version, restored if archived, verified.

Two parts:

* **Cold-site primitives**, shared with the restore drill (`restore_drill.py`): the `x-amz-restore`
  header, RestoreObject of an exact version with its answers sorted out (`request_restore`), and a
  streamed read of a version in bounded chunks that hashes as it goes (`stream_version`).
* **The operator's restore** (`vault-pipeline restore KEY --to PATH`, `commands/restore.py`):
  `resolve` decides which version and what its bytes must hash to, from two independent records that
  must agree, the tracking database and the write journal on the cold site; `Retriever` checks the
  object's own HEAD, requests a restore (or finds one in progress, or none needed), waits for it, then
  streams the version to a temporary file next to the destination and renames it into place only if the
  SHA-256 and the size match. A file that does not verify is removed: nothing unverified is ever left at
  the destination.

Deep Archive cannot be read until a restore completes (Standard: within 12 h, Bulk: within 48 h), so a
run may end before the restore does; a rerun finds the restore in progress (`x-amz-restore`) and waits for
it instead of requesting another. SeaweedFS has no restore (RestoreObject: MethodNotAllowed) and serves
archived objects directly; the moto server models Deep Archive like AWS.

Plain Python: no Dagster here.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import urllib3
from botocore.exceptions import BotoCoreError, ClientError, FlexibleChecksumError

from vault_pipeline.journal.chain import canonical_json, entry_hash
from vault_pipeline.journal.proof import find_copy_entry
from vault_pipeline.journal.reader import EntryNotFound, entry_at
from vault_pipeline.journal.segments import JournalError, SegmentStore
from vault_pipeline.replication.errors import describe_s3_error
from vault_pipeline.replication.verify import META_SHA256, head_version, storage_class_of

MiB = 1024 * 1024
TIERS: tuple[str, ...] = ("Bulk", "Standard", "Expedited")
# Storage classes whose objects must be restored before GetObject (AWS answers InvalidObjectState).
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
# RestoreObject refusals that mean "no restore here, try reading directly": SeaweedFS answers
# MethodNotAllowed (no restore at all), others NotImplemented, AWS and moto InvalidObjectState for a
# storage class that needs none.
NO_RESTORE_CODES = frozenset({"MethodNotAllowed", "NotImplemented", "InvalidObjectState"})
# What AWS promises, for the progress display.
EXPECTED_WAIT = {
    ("DEEP_ARCHIVE", "Standard"): "within 12 h", ("DEEP_ARCHIVE", "Bulk"): "within 48 h",
    ("GLACIER", "Expedited"): "1-5 min", ("GLACIER", "Standard"): "3-5 h", ("GLACIER", "Bulk"): "5-12 h",
}

_ONGOING = re.compile(r'ongoing-request\s*=\s*"(true|false)"', re.IGNORECASE)
_EXPIRY = re.compile(r'expiry-date\s*=\s*"([^"]+)"', re.IGNORECASE)


# ---------------------------------------------------------------------------------------------------
# Cold-site primitives (shared with the restore drill)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


@dataclass(frozen=True)
class RestoreHeader:
    """The x-amz-restore header: None when absent (no restore requested, or its copy expired)."""

    ongoing: bool
    expiry: dt.datetime | None
    raw: str

    @classmethod
    def parse(cls, value: str | None) -> RestoreHeader | None:
        if not value:
            return None
        ongoing = _ONGOING.search(value)
        if ongoing is None:
            return None
        expiry = None
        match = _EXPIRY.search(value)
        if match:
            try:
                expiry = email.utils.parsedate_to_datetime(match.group(1))
            except (TypeError, ValueError):
                expiry = None
        return cls(ongoing=ongoing.group(1).lower() == "true", expiry=expiry, raw=value)


RestoreAnswer = Literal["accepted", "restored", "in_progress", "not_needed"]


@dataclass(frozen=True)
class RestoreRequest:
    """How the cold site answered RestoreObject.

    accepted     202: the restore starts now
    restored     200: a restored copy exists already (its expiry was extended)
    in_progress  RestoreAlreadyInProgress: an earlier request is still being served
    not_needed   one of NO_RESTORE_CODES: no restore here, read directly (`refusal` says which)
    """

    answer: RestoreAnswer
    http_status: int | None = None
    refusal: str | None = None


def request_restore(client: Any, bucket: str, key: str, version_id: str, *, days: int, tier: str) -> RestoreRequest:
    """RestoreObject of exactly `version_id`. Any other refusal is raised (ClientError, connection errors)."""
    try:
        response = client.restore_object(
            Bucket=bucket, Key=key, VersionId=version_id,
            RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": tier}},
        )
    except ClientError as exc:
        code = error_code(exc)
        if code == "RestoreAlreadyInProgress":
            return RestoreRequest("in_progress", exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
        if code in NO_RESTORE_CODES:
            return RestoreRequest("not_needed", exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
                                  refusal=describe_s3_error(exc)[0])
        raise
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return RestoreRequest("restored" if status == 200 else "accepted", status)


def stream_version(client: Any, bucket: str, key: str, version_id: str, *, chunk_size: int = MiB,
                   digest: Any = None, offset: int = 0, sink: Callable[[bytes], Any] | None = None) -> tuple[Any, int]:
    """GET one version (from byte `offset` on) in chunks of `chunk_size`, feeding each chunk to `digest`
    (a new SHA-256 if None) and to `sink`. Memory stays at one chunk whatever the object's size.
    Returns (digest, bytes read by this call)."""
    digest = digest if digest is not None else hashlib.sha256()
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "VersionId": version_id}
    if offset:
        kwargs["Range"] = f"bytes={offset}-"
    response = client.get_object(**kwargs)
    body = response["Body"]
    size = 0
    try:
        for chunk in body.iter_chunks(chunk_size):
            digest.update(chunk)
            if sink is not None:
                sink(chunk)
            size += len(chunk)
    finally:
        body.close()
    return digest, size


# ---------------------------------------------------------------------------------------------------
# The operator's restore: errors


class RetrievalError(RuntimeError):
    """The restore cannot be done (unknown key or version, not replicated, missing records, server); the
    message is one line that says why. Exit status 2 in the command."""


class RetrievalRefused(RuntimeError):
    """The records or the bytes disagree: the document is not restored (and no file is left). Exit 1."""


class StillRestoring(RuntimeError):
    """The timeout came before the cold site finished restoring; a rerun resumes waiting."""

    def __init__(self, message: str, *, waited: float, header: str | None) -> None:
        super().__init__(message)
        self.waited = waited
        self.header = header


# ---------------------------------------------------------------------------------------------------
# Which version, and what it must hash to


@dataclass(frozen=True)
class JournalWitness:
    """The journal's copy entry of the version, as read from the cold site."""

    seq: int
    segment: str
    sha256: str
    size: int
    found_via: str  # "index" (vault_secure.journal_entries) or "scan" (read the whole journal)


@dataclass(frozen=True)
class Target:
    """The version to restore and what its bytes must be, agreed by the tracking DB and the journal."""

    key: str
    source_bucket: str
    cold_bucket: str
    version_id: str
    current: bool  # the row's verified copy (not an earlier version)
    sha256: str
    size: int
    db_sha256: str | None  # None: the DB keeps no SHA-256 of this (earlier) version
    db_source: str
    journal: JournalWitness
    notes: tuple[str, ...] = ()


_ROW_SQL = """
    SELECT s3_key, bucket_source, bucket_dest, status, error_message, sha256, ovh_size,
           aws_version_id, previous_cold_version_ids
    FROM vault_secure.replication_status WHERE bucket_source = %s AND s3_key = %s
"""
_INDEX_SQL = """
    SELECT seq, entry, fields, segment_key, written_at FROM vault_secure.journal_entries
    WHERE site = %s AND object_key = %s AND action = 'copy' ORDER BY seq NULLS LAST, id
"""


def _versions(row: Mapping[str, Any], index: list[tuple[Any, ...]]) -> list[str]:
    known = [*(row["previous_cold_version_ids"] or []), row["aws_version_id"]]
    known += [(entry or fields).get("version_id") for _, entry, fields, _, _ in index]
    seen: list[str] = []
    for version in known:
        if version and version not in seen:
            seen.append(str(version))
    return seen


def resolve(conn: Any, segments: SegmentStore, *, source_bucket: str, key: str,
            version_id: str | None = None) -> Target:
    """The version of `key` to restore and its expected SHA-256 and size.

    Default: the row's verified copy (status `replicated`). `version_id` may name it or an earlier copy
    (the row's previous_cold_version_ids, or any journaled copy). The tracking DB's value (the row for
    the current copy, its own copy of the journal entry for an earlier one) and the journal entry read
    from the cold site must agree: RetrievalRefused otherwise, naming both values.
    """
    cold_bucket = segments.bucket
    row = conn.execute(_ROW_SQL, (source_bucket, key)).fetchone()
    if row is None:
        raise RetrievalError(f"{key!r} is not tracked: no row in vault_secure.replication_status for hot bucket "
                             f"{source_bucket} (check the key, its case, spaces and the OVH_S3_BUCKET_DOCUMENTS "
                             "in this environment)")
    names = ("s3_key", "bucket_source", "bucket_dest", "status", "error_message", "sha256", "ovh_size",
             "aws_version_id", "previous_cold_version_ids")
    row = dict(zip(names, row, strict=True))
    if row["bucket_dest"] != cold_bucket:
        raise RetrievalError(f"{key!r} was replicated to cold bucket {row['bucket_dest']}, this environment's "
                             f"AWS_S3_BUCKET_DOCUMENTS_COLD is {cold_bucket}")
    index = conn.execute(_INDEX_SQL, (cold_bucket, key)).fetchall()
    status = row["status"]
    replicated = status == "replicated" and row["aws_version_id"]
    if version_id is None:
        if not replicated:
            why = f"; last error: {row['error_message']}" if row["error_message"] else ""
            if row["aws_version_id"]:
                raise RetrievalError(
                    f"{key!r} is {status} (a new hot version is being replicated{why}); its last replicated copy "
                    f"is version {row['aws_version_id']}: pass --version {row['aws_version_id']} to restore it")
            raise RetrievalError(f"{key!r} is not replicated yet (status {status}{why}): nothing to restore")
        version_id = str(row["aws_version_id"])
    known = _versions(row, index)
    if version_id not in known:
        raise RetrievalError(f"version {version_id!r} of {key!r} is not a known copy (known versions, oldest first: "
                             f"{', '.join(known) or 'none'})")
    current = bool(replicated) and version_id == row["aws_version_id"]
    notes: list[str] = []

    indexed = [(seq, entry, segment, written) for seq, entry, fields, segment, written in index
               if (entry or fields).get("version_id") == version_id]
    sequenced = [i for i in indexed if i[0] is not None]
    if indexed and not sequenced:
        raise RetrievalError(f"the journal entry of {key!r} version {version_id} is not written to the cold site yet "
                             "(it waits in the outbox for the next journal flush, at the end of every replication "
                             "run): rerun afterwards")
    if sequenced:
        seq, db_entry, segment, written = sequenced[-1]  # the latest copy entry (an adopted copy is journaled again)
        if written is None:
            raise RetrievalError(f"journal entry seq={seq} of {key!r} is not written to the cold site yet (segment "
                                 f"{segment}; the next journal flush writes it): rerun afterwards")
        try:
            journal_segment, entry = entry_at(segments, int(seq), segment=segment)
        except EntryNotFound:
            raise RetrievalRefused(f"journal entry seq={seq} is in the tracking DB's index but not on the cold site "
                                   f"(segment {segment}): refusing to restore (run `vault-pipeline journal verify`)"
                                   ) from None
        except JournalError as exc:
            raise RetrievalError(f"journal entry seq={seq} cannot be read from the cold site: {exc}") from None
        found_via = "index"
        if canonical_json(entry) != canonical_json(db_entry):
            if entry.get("sha256") != db_entry.get("sha256"):
                raise RetrievalRefused(
                    f"SHA-256 of {key!r} version {version_id}: the tracking DB's copy of journal entry seq={seq} says "
                    f"{db_entry.get('sha256')}, the journal on the cold site ({journal_segment}) says "
                    f"{entry.get('sha256')}: refusing to restore (run `vault-pipeline journal verify`)")
            differ = sorted(k for k in {*entry, *db_entry} if entry.get(k) != db_entry.get(k))
            raise RetrievalRefused(f"journal entry seq={seq} of {key!r} on the cold site differs from the tracking "
                                   f"DB's copy of it ({', '.join(differ)}): refusing to restore (run "
                                   "`vault-pipeline journal verify`)")
    else:
        # No index (a database rebuilt from the journal, or rows from before the journal): read the journal.
        notes.append(f"no index entry for {key!r} version {version_id} in vault_secure.journal_entries: "
                     "read the whole journal to find it")
        try:
            journal_segment, entry = find_copy_entry(segments, key, version_id=version_id)
        except JournalError as exc:
            raise RetrievalError(f"no journal entry for {key!r} version {version_id} on the cold site ({exc}): "
                                 "the tracking DB's value cannot be cross-checked, refusing to restore") from None
        db_entry = None
        found_via = "scan"
    _check_entry(segments, journal_segment, entry)
    witness = JournalWitness(seq=int(entry["seq"]), segment=journal_segment, sha256=str(entry.get("sha256")),
                             size=int(entry.get("size", -1)), found_via=found_via)

    if current:
        db_sha, db_size = str(row["sha256"]).strip(), int(row["ovh_size"])
        db_source = "vault_secure.replication_status"
    elif db_entry is not None:
        db_sha, db_size = str(db_entry.get("sha256")), int(db_entry.get("size", -1))
        db_source = f"vault_secure.journal_entries seq={db_entry.get('seq')}"
    else:
        db_sha, db_size = None, witness.size
        db_source = "vault_secure.replication_status (version listed; no SHA-256 kept for earlier versions)"
        notes.append(f"the tracking DB keeps no SHA-256 of earlier version {version_id}: expected value from the "
                     "journal, checked against the object's own metadata")
    if db_sha is not None and db_sha != witness.sha256:
        raise RetrievalRefused(
            f"SHA-256 of {key!r} version {version_id}: the tracking DB ({db_source}) says {db_sha}, the journal "
            f"(entry seq={witness.seq} in {witness.segment}) says {witness.sha256}: refusing to restore")
    if db_size != witness.size:
        raise RetrievalRefused(
            f"size of {key!r} version {version_id}: the tracking DB ({db_source}) says {db_size} bytes, the journal "
            f"(entry seq={witness.seq}) says {witness.size}: refusing to restore")
    return Target(key=key, source_bucket=source_bucket, cold_bucket=cold_bucket, version_id=version_id,
                  current=current, sha256=witness.sha256, size=witness.size, db_sha256=db_sha, db_source=db_source,
                  journal=witness, notes=tuple(notes))


def _check_entry(segments: SegmentStore, segment: str, entry: Mapping[str, Any]) -> None:
    """The entry is as written: its hash holds and its segment was never rewritten."""
    if entry.get("entry_hash") != entry_hash(entry):
        raise RetrievalRefused(f"journal entry seq={entry.get('seq')} in {segment} was altered (its entry_hash does "
                               "not match its content): refusing to restore (run `vault-pipeline journal verify`)")
    versions = segments.versions_of(segment)
    if versions != 1:
        raise RetrievalRefused(f"journal segment {segment} has {versions} versions (or delete markers): rewritten "
                               "after its write, refusing to restore (run `vault-pipeline journal verify`)")


# ---------------------------------------------------------------------------------------------------
# Restore, wait, read, verify, place


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
