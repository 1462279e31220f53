"""Streamed, verified copy of one object from the hot site to the locked cold site.

Small objects (up to the multipart threshold) are read once into memory, hashed and sent with one
PutObject whose x-amz-checksum-sha256 the cold server checks. Larger objects take two passes:
1. a streaming read computes the whole-object SHA-256 and the SHA-256 of every part, and writes the
   bytes to a local spool file when the spool budget and the disk allow;
2. the multipart upload sends each part with its pass-1 SHA-256, which the cold server checks (a part
   whose bytes differ is refused), several parts in flight, streamed from the spool file or, without
   one, from ranged GETs pinned to the hashed version (its VersionId, else If-Match on its ETag).
Bytes are copied as stored: a body is never decoded whatever its Content-Encoding says, and the SHA-256 is
of the stored bytes. The hot object's content headers (Content-Type, Content-Encoding, Content-Disposition,
Cache-Control, Content-Language) go with the copy and are verified on the cold HEAD.
The SHA-256 must be in the cold object's user metadata, which S3 only accepts when the upload starts,
hence pass 1. Memory is bounded by a few 1 MiB chunks per part in flight, whatever the object size
(by part_size x part_concurrency when the cold client cannot stream a part body).
An upload that fails is aborted; its id is recorded first so that a killed process's upload is aborted
by the next run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from vault_pipeline.replication.checksums import ExpectedChecksum, b64
from vault_pipeline.replication.cold_object import cold_object_args, cold_tags
from vault_pipeline.replication.errors import CopyError, condition_refused, s3_answer, wrap, wrap_hot
from vault_pipeline.replication.identity import application_ids
from vault_pipeline.replication.inventory import strip_etag
from vault_pipeline.replication.policy import ResolvedRetention, RetentionPolicy
from vault_pipeline.replication.spool import READ_CHUNK, SPOOL_BUDGET, SPOOL_FREE_MARGIN, MiB, PartHasher, SpoolFile
from vault_pipeline.replication.tracking import ReplicationOutcome
from vault_pipeline.replication.verify import (
    CONTENT_HEADERS,
    META_INTAKE_SHA256,
    META_PART_SIZE,
    META_SHA256,
    META_SOURCE_ETAG,
    ColdEvidence,
    Expectation,
    head_version,
    verify_copy,
)
from vault_pipeline.settings import setting_default

log = logging.getLogger(__name__)

MAX_PARTS = 10_000
# Parts in flight through a client that holds each part whole while sending it (the fast path: awscrt
# buffers a request's body), across every copy of the process: 8 parts of 8 MiB, whatever the number of
# large objects copied at once (W2, 4 x 4 parts in flight: +110 MiB peak RSS without it).
BUFFERED_PARTS = threading.BoundedSemaphore(8)


class _Adopt(Exception):  # control flow inside _copy_large_from, never escapes it
    """The conditional Complete was refused because a copy of the same source is there already."""


@dataclass(frozen=True)
class CopyOptions:
    storage_class: str = setting_default("cold_storage_class")
    multipart_threshold: int = setting_default("multipart_threshold_mb") * MiB
    part_size: int = setting_default("part_size_mb") * MiB
    part_concurrency: int = setting_default("part_concurrency")
    reserved_prefixes: tuple[str, ...] = ()  # cold prefixes the pipeline writes itself (reports, journal)
    # Write a first copy with If-None-Match: * instead of first asking (HEAD) whether one exists: one
    # request less per object. Servers without conditional writes are detected and asked the old way.
    conditional_writes: bool = True
    # Large objects are written to a local spool file while they are hashed, and their parts are sent
    # from it: the hot site is read once instead of twice. Objects that do not fit in the budget (shared
    # by every copy of the process) are read again with ranged GETs. 0 turns spooling off.
    spool_dir: str | None = None  # None: the system's temporary directory
    spool_max_bytes: int = setting_default("spool_max_mb") * MiB
    # Lock for at least this many days from the write (policy.py: a document whose policy date is past).
    minimum_lock_days: int = setting_default("minimum_lock_days")

    def part_size_for(self, size: int) -> int:
        """The configured part size, grown in whole MiB when the object would need over 10,000 parts."""
        needed = math.ceil(size / MAX_PARTS)
        return max(self.part_size, math.ceil(needed / MiB) * MiB)


@dataclass(frozen=True)
class SourceObject:
    key: str
    etag: str
    size: int
    last_modified: dt.datetime
    version_id: str | None
    metadata: dict[str, str]
    content_type: str | None
    content_encoding: str | None = None
    content_disposition: str | None = None
    cache_control: str | None = None
    content_language: str | None = None

    def content_headers(self) -> dict[str, str]:
        """The content headers to give the cold copy (boto3 names, see verify.CONTENT_HEADERS), those set."""
        values = (self.content_type, self.content_encoding, self.content_disposition, self.cache_control,
                  self.content_language)
        return {name: value for name, value in zip(CONTENT_HEADERS, values, strict=True) if value}


def stored_encoding(value: str | None) -> str | None:
    """Content-Encoding as the object is stored: without `aws-chunked`, which only describes how an upload
    travelled (S3 drops it; a server that kept it would make the cold site expect a chunked body). Any
    other value is kept exactly as it is."""
    if not value or "aws-chunked" not in value.lower():
        return value or None
    codings = [c.strip() for c in value.split(",") if c.strip() and c.strip().lower() != "aws-chunked"]
    return ", ".join(codings) or None


UploadHook = Callable[[str | None], None]
# Called right before a write that is not conditional on the key having no version (every
# CompleteMultipartUpload, a small object's unconditional PUT); raises (errors.LeaseLost) when this worker
# no longer holds the row, so that a worker that lost its lease never writes a second locked version.
Fence = Callable[[], None]
# Which open uploads of a cold key live workers of other rows own: (their upload ids, whether one of them
# has not recorded its id yet). See TrackingStore.live_uploads.
LiveUploads = Callable[[], tuple[set[str], bool]]


class ObjectCopier:
    def __init__(
        self, *, hot: Any, hot_bucket: str, cold: Any, cold_bucket: str, policy: RetentionPolicy,
        options: CopyOptions,
    ) -> None:
        self.hot, self.hot_bucket = hot, hot_bucket
        # Reads that may be large (the hash pass, ranged parts) go to a client that streams bodies: the fast
        # path's `streaming` (its boto3 client) when the hot client has one.
        self._stream = getattr(hot, "streaming", hot)
        self.cold, self.cold_bucket = cold, cold_bucket
        self.policy = policy
        self.options = options
        self._conditional = options.conditional_writes  # turned off for good if the server lacks it

    # -- entry point ------------------------------------------------------------------------------
    def replicate(self, key: str, *, listed_size: int, listed_etag: str | None = None,
                  on_upload: UploadHook | None = None, first_copy: bool = False, fence: Fence | None = None,
                  live_uploads: LiveUploads | None = None) -> ReplicationOutcome:
        """Copy `key` (or recognise an existing verified copy of the same source) and verify it.

        `first_copy`: the manifest knows no cold version of this key, so the write can be conditional
        (If-None-Match) instead of checked beforehand; if a version exists after all (a copy written by a
        run that died before recording it), the server refuses and the usual check adopts it. A large
        object's first copy is completed with If-None-Match too, after `fence` (see Fence)."""
        on_upload = on_upload or (lambda _upload_id: None)
        if key.startswith(self.options.reserved_prefixes):
            raise CopyError(f"key {key!r} is under a prefix reserved on the cold site for the pipeline's own "
                            f"records {self.options.reserved_prefixes}: rename it on the hot site", retryable=False)
        if listed_size <= self.options.multipart_threshold:
            source, body = self._read_small(key, listed_etag)
            if source.size > self.options.multipart_threshold:  # grew since it was listed
                return self.replicate(key, listed_size=source.size, on_upload=on_upload, first_copy=first_copy,
                                      fence=fence, live_uploads=live_uploads)
            return self._copy_small(source, body, first_copy=first_copy, fence=fence)
        source = self._head_source(key)
        return self._copy_large(source, on_upload, first_copy=first_copy, fence=fence, live_uploads=live_uploads)

    def abort_upload(self, key: str, upload_id: str) -> bool:
        """Abort an upload left open by a dead process; False if the server no longer knows it."""
        try:
            self.cold.abort_multipart_upload(Bucket=self.cold_bucket, Key=key, UploadId=upload_id)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchUpload", "404"):
                return False
            raise wrap(f"AbortMultipartUpload {upload_id} on cold object {key!r}", exc) from exc

    def abort_uploads_for_key(self, key: str, *, keep: Collection[str] = (), keep_unknown: bool = False) -> int:
        """Abort the open uploads of exactly `key` except those in `keep` (uploads that live workers
        recorded): a worker killed between CreateMultipartUpload and recording the upload id leaves one
        nobody knows the id of. With `keep_unknown` (a live worker writing this cold key has not recorded its
        upload id yet, so an unknown upload may be its own) nothing is aborted: a later takeover cleans up."""
        aborted = 0
        if keep_unknown:
            return 0
        try:
            response = self.cold.list_multipart_uploads(Bucket=self.cold_bucket, Prefix=key)
        except Exception as exc:
            raise wrap(f"ListMultipartUploads for cold object {key!r}", exc) from exc
        for upload in response.get("Uploads", []):
            if upload["Key"] == key and upload["UploadId"] not in keep and self.abort_upload(key, upload["UploadId"]):
                aborted += 1
        return aborted

    # -- source side ------------------------------------------------------------------------------
    def _source_from(self, key: str, response: dict[str, Any]) -> SourceObject:
        return SourceObject(
            key=key,
            etag=strip_etag(response.get("ETag")),
            size=int(response["ContentLength"]),
            last_modified=response["LastModified"].astimezone(dt.UTC),
            version_id=response.get("VersionId") if response.get("VersionId") not in (None, "null") else None,
            metadata=dict(response.get("Metadata") or {}),
            content_type=response.get("ContentType"),
            content_encoding=stored_encoding(response.get("ContentEncoding")),
            content_disposition=response.get("ContentDisposition"),
            cache_control=response.get("CacheControl"),
            content_language=response.get("ContentLanguage"),
        )

    @staticmethod
    def _check_intake_hash(source: SourceObject, sha_hex: str) -> None:
        """A hot object whose bytes no longer hash to the value its intake recorded was altered on the hot site:
        copying it would lock the altered bytes for decades."""
        intake = (source.metadata.get(META_INTAKE_SHA256) or "").strip().lower()
        if intake and intake != sha_hex:
            raise CopyError(f"hot object {source.key!r} hashes to {sha_hex}, not to the SHA-256 {intake} taken at its "
                            "intake: it was altered on the hot site after delivery; nothing was copied",
                            retryable=False)

    @staticmethod
    def _pinned(source: SourceObject) -> dict[str, str]:
        """GetObject arguments that read the version hashed and nothing else: its VersionId when the hot
        bucket is versioned (later writes do not touch it), else If-Match on its ETag (a replaced object
        is refused with 412)."""
        return {"VersionId": source.version_id} if source.version_id else {"IfMatch": f'"{source.etag}"'}

    @staticmethod
    def _same_version(source: SourceObject, response: dict[str, Any], what: str) -> None:
        """Refuse an answer for another version than the one hashed: a server that ignores If-Match would
        otherwise give a copy mixing two versions' bytes."""
        etag = strip_etag(response.get("ETag"))
        if etag != source.etag:
            response["Body"].close()
            raise CopyError(f"{what} of hot object {source.key!r} answered ETag {etag!r}, not {source.etag!r} of "
                            "the version hashed: the object changed during its copy (copied again next attempt)")

    @staticmethod
    def _source_error(what: str, source: SourceObject, exc: BaseException) -> CopyError:
        if isinstance(exc, ClientError) and condition_refused(exc):
            return CopyError(f"{what} of hot object {source.key!r} failed: the object changed during its copy (the "
                             f"version hashed, ETag {source.etag!r}, is no longer current; copied again next attempt)")
        return wrap_hot(f"{what} of hot object {source.key!r}", source.key, exc)

    def _read_small(self, key: str, listed_etag: str | None = None) -> tuple[SourceObject, bytes]:
        """A document listed small, read whole. Pinned to the listed ETag: the hot client may receive a body
        whole before handing it over (the fast path does), so a document replaced since its listing, maybe by
        a large one, is refused (412) and read again as it is now, streamed."""
        try:
            response = self._get_small(key, listed_etag)
            source = self._source_from(key, response)
            if source.size > self.options.multipart_threshold:
                response["Body"].close()
                return source, b""
            body = response["Body"].read()
        except Exception as exc:
            raise wrap_hot(f"GET hot object {key!r}", key, exc) from exc
        if len(body) != source.size:
            raise CopyError(f"GET hot object {key!r} returned {len(body)} bytes, expected {source.size}")
        return source, body

    def _get_small(self, key: str, listed_etag: str | None) -> dict[str, Any]:
        if listed_etag is not None:
            try:
                return self.hot.get_object(Bucket=self.hot_bucket, Key=key, IfMatch=f'"{listed_etag}"')
            except ClientError as exc:
                if not condition_refused(exc):
                    raise
        return self._stream.get_object(Bucket=self.hot_bucket, Key=key)

    def _head_source(self, key: str) -> SourceObject:
        try:
            return self._source_from(key, self.hot.head_object(Bucket=self.hot_bucket, Key=key))
        except Exception as exc:
            raise wrap_hot(f"HEAD hot object {key!r}", key, exc) from exc

    def _hash_pass(self, source: SourceObject, part_size: int, spool: SpoolFile | None
                   ) -> tuple[bytes, list[bytes], bool]:
        """Stream the source once: whole-object SHA-256 and per-part SHA-256 digests, the bytes written to
        `spool` on the way. The last value says whether the spool holds the whole object (a write that
        fails, e.g. a full disk, only costs the spool: the parts are then read again from the hot site)."""
        whole = hashlib.sha256()
        parts = PartHasher(part_size)
        total = 0
        try:
            response = self._stream.get_object(Bucket=self.hot_bucket, Key=source.key, **self._pinned(source))
            self._same_version(source, response, "GET (hash pass)")
            for chunk in response["Body"].iter_chunks(READ_CHUNK):
                total += len(chunk)
                whole.update(chunk)
                if spool is not None:
                    try:
                        spool.write(chunk)
                    except OSError as exc:
                        log.warning("spool file for %r abandoned (%s): parts will be read again", source.key, exc)
                        spool = None
                parts.update(chunk)
        except CopyError:
            raise
        except Exception as exc:
            raise self._source_error("GET (hash pass)", source, exc) from exc
        if total != source.size:
            raise CopyError(f"hot object {source.key!r}: read {total} bytes, expected {source.size}")
        return whole.digest(), parts.finish(), spool is not None and spool.written == total

    def _read_range(self, source: SourceObject, start: int, length: int) -> bytes:
        return b"".join(self._range_chunks(source, start, length))

    # -- cold side --------------------------------------------------------------------------------
    def _retention(self, source: SourceObject, existing: dict[str, Any] | None = None) -> ResolvedRetention:
        """The lock `source` gets. The minimum lock (a policy date already past) counts from the write: now for
        a new copy, the cold version's own LastModified for an adopted one, so adopting asks for the lock that
        was written rather than extending it on every rerun."""
        written = existing.get("LastModified") if existing else None
        return self.policy.resolve(source.metadata, source.last_modified,
                                   now=written or dt.datetime.now(dt.UTC),
                                   minimum_lock_days=self.options.minimum_lock_days)

    def _existing_copy(self, source: SourceObject) -> dict[str, Any] | None:
        """The latest cold version when it was written from this very source (same ETag), else None."""
        try:
            head = head_version(self.cold, self.cold_bucket, source.key)
        except Exception as exc:
            raise wrap(f"HEAD cold object {source.key!r}", exc) from exc
        if head is None:
            return None
        meta = head.get("Metadata") or {}
        if meta.get(META_SOURCE_ETAG) != source.etag or not meta.get(META_SHA256):
            return None
        if any(head.get(name) != value for name, value in source.content_headers().items()):
            return None  # written without the headers the source has (before they were carried): copy anew
        return head

    # -- copy paths -------------------------------------------------------------------------------
    def _copy_small(self, source: SourceObject, body: bytes, *, first_copy: bool,
                    fence: Fence | None = None) -> ReplicationOutcome:
        digest = hashlib.sha256(body).digest()
        sha_hex = digest.hex()
        self._check_intake_hash(source, sha_hex)
        retention = self._retention(source)
        expected = ExpectedChecksum.full(digest)
        args = cold_object_args(self.cold_bucket, self.options.storage_class, source, sha_hex, retention, None)
        if first_copy and self._conditional:
            written = self._put_if_absent(source, body, digest, args)
            if written is not None:
                return self._verified(source, sha_hex, expected, retention, None, written.get("VersionId"))
        existing = self._existing_copy(source)
        if existing and existing["Metadata"].get(META_SHA256) == sha_hex and not expected.mismatch(
                existing.get("ChecksumSHA256")):
            return self._verified(source, sha_hex, expected, self._retention(source, existing), None,
                                  existing["VersionId"], adopted=True)
        if fence is not None:  # an unconditional write (a changed source, or no If-None-Match): lease first
            fence()
        try:
            response = self.cold.put_object(Body=body, ChecksumSHA256=b64(digest), **args)
        except Exception as exc:
            raise wrap(f"PUT cold object {source.key!r}", exc) from exc
        return self._verified(source, sha_hex, expected, retention, None, response.get("VersionId"))

    def _put_if_absent(self, source: SourceObject, body: bytes, digest: bytes,
                       args: dict[str, Any]) -> dict[str, Any] | None:
        """The first copy of a key, written only if the key has no version yet: the PUT's response; None
        when the key has a version or the server does not do conditional writes: the caller then checks
        for a copy to adopt."""
        try:
            response = self.cold.put_object(Body=body, ChecksumSHA256=b64(digest), IfNoneMatch="*", **args)
        except ClientError as exc:
            code, status = s3_answer(exc)
            if condition_refused(exc, conflict=True):
                return None
            if code == "NotImplemented" or status == 501:
                self._conditional = False
                return None
            if isinstance(status, int) and status >= 500:
                # Still failing after the client's retries. SeaweedFS answers 500 to a conditional PUT of a
                # key with a ~250-byte segment: the unconditional path (HEAD, then PUT) copies those.
                return None
            raise wrap(f"PUT cold object {source.key!r}", exc) from exc
        except Exception as exc:
            raise wrap(f"PUT cold object {source.key!r}", exc) from exc
        return response

    def _copy_large(self, source: SourceObject, on_upload: UploadHook, *, first_copy: bool = False,
                    fence: Fence | None = None, live_uploads: LiveUploads | None = None) -> ReplicationOutcome:
        spool = self._open_spool(source)
        try:
            return self._copy_large_from(source, on_upload, spool, first_copy=first_copy, fence=fence,
                                         live_uploads=live_uploads)
        finally:
            if spool is not None:
                spool.close()
                SPOOL_BUDGET.release(source.size)

    def _open_spool(self, source: SourceObject) -> SpoolFile | None:
        """A spool file for `source` when the budget and the disk allow, else None (ranged GETs)."""
        if self.options.spool_max_bytes <= 0 or not SPOOL_BUDGET.reserve(source.size, self.options.spool_max_bytes):
            return None
        directory = self.options.spool_dir or tempfile.gettempdir()
        try:
            if shutil.disk_usage(directory).free < source.size + SPOOL_FREE_MARGIN:
                raise OSError(f"not enough free space in {directory}")
            return SpoolFile(directory, source.size)
        except OSError as exc:
            log.info("no spool file for %r (%s): its parts are read again from the hot site", source.key, exc)
            SPOOL_BUDGET.release(source.size)
            return None

    def _copy_large_from(self, source: SourceObject, on_upload: UploadHook, spool: SpoolFile | None, *,
                         first_copy: bool = False, fence: Fence | None = None,
                         live_uploads: LiveUploads | None = None) -> ReplicationOutcome:
        retention = self._retention(source)
        part_size = self.options.part_size_for(source.size)
        existing = self._existing_copy(source)
        existing_part_size = (existing["Metadata"].get(META_PART_SIZE) or "") if existing else ""
        # An earlier copy of this source may have used another part size: hash with its parts to compare.
        hash_part_size = int(existing_part_size) if existing_part_size.isdigit() else part_size
        whole, part_digests, spooled = self._hash_pass(source, hash_part_size, spool)
        spool = spool if spooled else None
        sha_hex = whole.hex()
        self._check_intake_hash(source, sha_hex)
        expected = ExpectedChecksum.composite(part_digests)
        if existing and existing["Metadata"].get(META_SHA256) == sha_hex and not expected.mismatch(
                existing.get("ChecksumSHA256")):
            return self._verified(source, sha_hex, expected, self._retention(source, existing), hash_part_size,
                                  existing["VersionId"], adopted=True)
        if hash_part_size != part_size:
            if spool is not None:
                part_digests = self._part_digests(spool, part_size)
            else:
                whole, part_digests, _ = self._hash_pass(source, part_size, None)
            expected = ExpectedChecksum.composite(part_digests)
        args = cold_object_args(self.cold_bucket, self.options.storage_class, source, sha_hex, retention,
                                part_size)
        try:
            created = self.cold.create_multipart_upload(**args)
        except Exception as exc:
            self._abort_strays(source.key, None, live_uploads)  # an answer lost may hide an open upload
            raise wrap(f"CreateMultipartUpload for cold object {source.key!r}", exc) from exc
        upload_id = created["UploadId"]
        if created.get("ResponseMetadata", {}).get("RetryAttempts"):
            # The client retried: an earlier attempt may have opened an upload whose id we never learnt.
            self._abort_strays(source.key, upload_id, live_uploads)
        try:
            on_upload(upload_id)  # raises when this worker lost the row: the upload is aborted below
            parts = self._upload_parts(source, upload_id, part_size, part_digests, spool)
            response = self._complete_upload(source, upload_id, parts, sha_hex, expected, first_copy=first_copy,
                                             fence=fence)
            if response is None:  # the key got a copy of this very source meanwhile: adopt it
                raise _Adopt
        except _Adopt:
            self._abort_quietly(source.key, upload_id)
            on_upload(None)
            existing = self._existing_copy(source)
            if existing is None:
                raise CopyError(f"cold object {source.key!r}: the copy that refused ours is gone") from None
            return self._verified(source, sha_hex, expected, retention, part_size, existing["VersionId"],
                                  adopted=True)
        except BaseException as exc:
            self._abort_quietly(source.key, upload_id)
            on_upload(None)
            if isinstance(exc, CopyError):
                raise
            if isinstance(exc, Exception):
                raise wrap(f"multipart upload of cold object {source.key!r}", exc) from exc
            raise
        on_upload(None)
        return self._verified(source, sha_hex, expected, retention, part_size, response.get("VersionId"))

    def _complete_upload(self, source: SourceObject, upload_id: str, parts: list[dict[str, Any]], sha_hex: str,
                         expected: ExpectedChecksum, *, first_copy: bool, fence: Fence | None
                         ) -> dict[str, Any] | None:
        """CompleteMultipartUpload, the step that makes a COMPLIANCE-locked version nobody can delete.

        `fence` first: a worker that lost its lease stops here. A first copy is then completed with
        `If-None-Match: *`, so two workers racing on one key leave one version: the loser gets 412 and
        None (adopt the winner's copy of the same source); a version of other content (an older source a
        dead run wrote) gets ours on top, as the small path does. The upload stays open after a 412 (AWS,
        SeaweedFS and moto), so it can still be completed."""
        if fence is not None:
            fence()
        request = {"Bucket": self.cold_bucket, "Key": source.key, "UploadId": upload_id,
                   "MultipartUpload": {"Parts": parts}}
        if first_copy and self._conditional:
            try:
                return self.cold.complete_multipart_upload(IfNoneMatch="*", **request)
            except ClientError as exc:
                code, status = s3_answer(exc)
                if code == "NotImplemented" or status == 501:
                    self._conditional = False
                elif condition_refused(exc, conflict=True):
                    existing = self._existing_copy(source)
                    if existing and existing["Metadata"].get(META_SHA256) == sha_hex and not expected.mismatch(
                            existing.get("ChecksumSHA256")):
                        return None
                    if status == 409:  # a concurrent conflicting request: another attempt decides
                        raise wrap(f"CompleteMultipartUpload of cold object {source.key!r}", exc) from exc
                else:
                    raise
        return self.cold.complete_multipart_upload(**request)

    @staticmethod
    def _part_digests(spool: SpoolFile, part_size: int) -> list[bytes]:
        parts = PartHasher(part_size)
        for chunk in spool.chunks(0, spool.size):
            parts.update(chunk)
        return parts.finish()

    def _range_chunks(self, source: SourceObject, start: int, length: int) -> Iterator[bytes]:
        """A part of the source, streamed from a ranged GET pinned to the hashed version (_pinned)."""
        what = f"ranged GET (bytes {start}+{length})"
        try:
            response = self._stream.get_object(
                Bucket=self.hot_bucket, Key=source.key, Range=f"bytes={start}-{start + length - 1}",
                **self._pinned(source),
            )
        except Exception as exc:
            raise self._source_error(what, source, exc) from exc
        self._same_version(source, response, what)
        received = 0
        body = response["Body"]
        try:
            for chunk in body.iter_chunks(READ_CHUNK):
                received += len(chunk)
                yield chunk
        except Exception as exc:
            raise wrap(f"ranged GET of hot object {source.key!r} bytes {start}+{length}", exc) from exc
        finally:
            body.close()
        if received != length:
            raise CopyError(f"ranged GET of hot object {source.key!r} returned {received} bytes, expected {length}")

    def _upload_parts(self, source: SourceObject, upload_id: str, part_size: int,
                      part_digests: list[bytes], spool: SpoolFile | None) -> list[dict[str, Any]]:
        streamed = hasattr(self.cold, "upload_part_streamed")

        def send(number: int) -> dict[str, Any]:
            start = (number - 1) * part_size
            length = min(part_size, source.size - start)
            checksum = b64(part_digests[number - 1])  # the cold site refuses a part whose bytes differ
            try:
                if streamed:  # never a whole part in memory
                    def open_body() -> Iterator[bytes]:
                        return spool.chunks(start, length) if spool else self._range_chunks(source, start, length)

                    with BUFFERED_PARTS:
                        response = self.cold.upload_part_streamed(
                            Bucket=self.cold_bucket, Key=source.key, UploadId=upload_id, PartNumber=number,
                            ChecksumSHA256=checksum, length=length, open_body=open_body)
                else:
                    data = spool.read(start, length) if spool else self._read_range(source, start, length)
                    if spool is None and hashlib.sha256(data).digest() != part_digests[number - 1]:
                        raise CopyError(f"hot object {source.key!r} part {number} changed between the hash pass "
                                        "and the upload")
                    response = self.cold.upload_part(
                        Bucket=self.cold_bucket, Key=source.key, UploadId=upload_id, PartNumber=number, Body=data,
                        ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum,
                    )
            except CopyError:
                raise
            except Exception as exc:
                raise wrap(f"UploadPart {number} of cold object {source.key!r}", exc) from exc
            return {"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": checksum}

        numbers = range(1, len(part_digests) + 1)
        with ThreadPoolExecutor(max_workers=self.options.part_concurrency,
                                thread_name_prefix="vault-part") as pool:
            # map() yields in order and re-raises the first failure; the pool finishes in-flight parts.
            return list(pool.map(send, numbers))

    def _abort_strays(self, key: str, ours: str | None, live_uploads: LiveUploads | None) -> None:
        """Abort the open uploads of `key` that are neither `ours` nor a live worker's: those our own lost
        CreateMultipartUpload answers left (this worker holds the row, so nobody else of it writes the key).
        Best effort: what is left is aborted by the next takeover of the row."""
        try:
            keep, unknown_live = live_uploads() if live_uploads else (set(), False)
            self.abort_uploads_for_key(key, keep={*keep, *([ours] if ours else [])}, keep_unknown=unknown_live)
        except Exception:
            log.warning("could not abort stray uploads of %r", key, exc_info=True)

    def _abort_quietly(self, key: str, upload_id: str) -> None:
        for attempt in range(3):
            try:
                self.abort_upload(key, upload_id)
                return
            except CopyError:
                time.sleep(0.5 * (attempt + 1))

    def _verified(self, source: SourceObject, sha_hex: str, expected: ExpectedChecksum,
                  retention: ResolvedRetention, part_size: int | None, version_id: str | None,
                  adopted: bool = False) -> ReplicationOutcome:
        if not version_id:
            raise CopyError(f"cold site returned no version id for {source.key!r}: is the bucket versioned?",
                            retryable=False)
        verified = verify_copy(self.cold, self.cold_bucket, Expectation(
            key=source.key, version_id=version_id, size=source.size, sha256_hex=sha_hex, checksum=expected,
            retain_until=retention.retain_until, storage_class=self.options.storage_class,
            headers=tuple(source.content_headers().items()),
        ))
        ids = application_ids(source.metadata)
        notes = retention.notes + ids.notes + (
            (f"lock {verified.lock_repaired} after upload",) if verified.lock_repaired else ())
        return ReplicationOutcome(
            source_etag=source.etag, source_version_id=source.version_id, file_size=source.size,
            source_last_modified=source.last_modified, sha256=sha_hex, cold_checksum=verified.checksum,
            cold_checksum_type=expected.kind, part_size=part_size, document_type=retention.document_type,
            source_document_type=retention.source_document_type, retention_years=retention.retention_years,
            retain_until=verified.retain_until, retention_base=retention.base, retention_note=retention.note,
            storage_class=verified.storage_class, cold_version_id=verified.version_id, cold_etag=verified.etag,
            adopted=adopted, notes=notes, lock_repaired=verified.lock_repaired,
            evidence=ColdEvidence.from_head(verified.head, tags_sent=None if adopted else cold_tags(retention)),
            document_id=ids.document_id, user_id=ids.user_id,
        )
