"""Verification of a cold copy from metadata calls only.

Deep Archive objects cannot be read back without a 12-48 h restore, so a copy is proven from the cold
site's HEAD (ChecksumMode=ENABLED): size, the server's own checksum against the value we computed,
our SHA-256 in the user metadata, the storage class, the COMPLIANCE lock and its date, the tag count,
and the content headers carried from the hot object (Content-Encoding, Content-Type, ...).
A missing or short lock is set or extended here (never shortened): some servers drop the lock headers
of CreateMultipartUpload, and a copy is not "replicated" until it is locked.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from vault_pipeline.replication.checksums import ExpectedChecksum
from vault_pipeline.replication.errors import VerificationError, describe_s3_error, wrap

META_SHA256 = "vault-sha256"
META_SOURCE_ETAG = "vault-source-etag"
META_SOURCE_VERSION = "vault-source-version-id"
META_SOURCE_LAST_MODIFIED = "vault-source-last-modified"
META_DOCUMENT_TYPE = "vault-document-type"
META_RETENTION_YEARS = "vault-retention-years"
META_RETAIN_UNTIL = "vault-retain-until"
META_PART_SIZE = "vault-part-size"
# Set on the hot object by an intake that hashed the bytes as they arrived (the SFTP intake): the copy checks
# its own hash against it, so the cold copy is proven equal to what was delivered, end to end.
META_INTAKE_SHA256 = "intake-sha256"
TAG_DOCUMENT_TYPE = "DocumentType"
TAG_RETENTION_YEARS = "RetentionYears"
# The representation headers a copy carries from the hot object, as they are there: how to read the bytes
# (Content-Encoding: a gzip document stays gzip bytes labelled gzip) and how to serve them. boto3 uses the
# same names in a HEAD/GET answer and in PutObject/CreateMultipartUpload arguments.
CONTENT_HEADERS = ("ContentType", "ContentEncoding", "ContentDisposition", "CacheControl", "ContentLanguage")


@dataclass(frozen=True)
class Expectation:
    key: str
    version_id: str
    size: int
    sha256_hex: str
    checksum: ExpectedChecksum
    retain_until: dt.datetime
    storage_class: str
    tag_count: int = 2
    headers: tuple[tuple[str, str], ...] = ()  # CONTENT_HEADERS sent with the copy, as (name, value)


@dataclass(frozen=True, slots=True)
class ColdEvidence:
    """What the verifying HEAD of a cold version showed, kept (compactly) so that the same run's audit
    judges that version from this answer instead of asking the cold site the same question again."""

    version_id: str
    size: int
    checksum_sha256: str | None
    metadata_sha256: str | None
    lock_mode: str | None
    retain_until: dt.datetime | None
    storage_class: str
    tag_count: int | None
    # The tags this run sent with the object itself (same request as the lock); None for an adopted copy
    # written by an earlier run: its tags must be read back.
    tags_sent: tuple[tuple[str, str], ...] | None

    @classmethod
    def from_head(cls, head: dict[str, Any], tags_sent: dict[str, str] | None) -> ColdEvidence:
        count = head.get("TagCount")
        return cls(
            version_id=str(head.get("VersionId") or ""), size=int(head.get("ContentLength", -1)),
            checksum_sha256=head.get("ChecksumSHA256"), metadata_sha256=(head.get("Metadata") or {}).get(META_SHA256),
            lock_mode=head.get("ObjectLockMode"), retain_until=head.get("ObjectLockRetainUntilDate"),
            storage_class=storage_class_of(head), tag_count=None if count is None else int(count),
            tags_sent=tuple(sorted(tags_sent.items())) if tags_sent is not None else None,
        )

    def as_head(self) -> dict[str, Any]:
        """The HEAD answer this evidence came from, as far as an audit reads it."""
        head: dict[str, Any] = {"VersionId": self.version_id, "ContentLength": self.size,
                                "Metadata": {META_SHA256: self.metadata_sha256} if self.metadata_sha256 else {},
                                "StorageClass": self.storage_class}
        optional = {"ChecksumSHA256": self.checksum_sha256, "ObjectLockMode": self.lock_mode,
                    "ObjectLockRetainUntilDate": self.retain_until, "TagCount": self.tag_count}
        head.update({k: v for k, v in optional.items() if v is not None})
        return head


@dataclass(frozen=True)
class VerifiedCopy:
    version_id: str
    etag: str
    checksum: str
    checksum_type: str
    storage_class: str
    retain_until: dt.datetime
    lock_repaired: str | None  # "set" / "extended" when verification had to (re)apply the lock
    head: dict[str, Any]  # the HEAD of the verified version (after any lock repair)


def storage_class_of(head: dict[str, Any]) -> str:
    # AWS omits x-amz-storage-class for STANDARD.
    return str(head.get("StorageClass") or "STANDARD")


def head_version(client: Any, bucket: str, key: str, version_id: str | None = None) -> dict[str, Any] | None:
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "ChecksumMode": "ENABLED"}
    if version_id:
        kwargs["VersionId"] = version_id
    try:
        return client.head_object(**kwargs)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status in (404, 405) or exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NoSuchVersion"):
            return None
        raise


def verify_copy(client: Any, bucket: str, expect: Expectation) -> VerifiedCopy:
    where = f"cold object {expect.key!r} version {expect.version_id}"
    try:
        head = head_version(client, bucket, expect.key, expect.version_id)
    except Exception as exc:
        raise wrap(f"HEAD {where}", exc) from exc
    if head is None:
        raise VerificationError(f"{where} is not there right after being written")
    problems: list[str] = []
    if int(head.get("ContentLength", -1)) != expect.size:
        problems.append(f"size {head.get('ContentLength')} != {expect.size}")
    checksum_problem = expect.checksum.mismatch(head.get("ChecksumSHA256"))
    if checksum_problem:
        problems.append(checksum_problem)
    meta_sha = (head.get("Metadata") or {}).get(META_SHA256)
    if meta_sha != expect.sha256_hex:
        problems.append(f"metadata {META_SHA256}={meta_sha!r} != {expect.sha256_hex}")
    storage_class = storage_class_of(head)
    if storage_class != expect.storage_class:
        problems.append(f"storage class {storage_class} != {expect.storage_class}")
    tag_count = head.get("TagCount")
    if tag_count is not None and int(tag_count) != expect.tag_count:
        problems.append(f"{tag_count} tags, expected {expect.tag_count}")
    problems.extend(f"{name} {head.get(name)!r} != {value!r}" for name, value in expect.headers
                    if head.get(name) != value)
    if problems:
        # Nothing was wrong with the request, so the bytes or the server are: another attempt writes anew.
        raise VerificationError(f"{where} failed verification: " + "; ".join(problems))

    lock_repaired = None
    mode = head.get("ObjectLockMode")
    until = head.get("ObjectLockRetainUntilDate")
    if mode not in (None, "COMPLIANCE"):
        raise VerificationError(f"{where} is locked in {mode} mode, not COMPLIANCE", retryable=False)
    if mode is None or until is None or until < expect.retain_until:
        lock_repaired = "set" if mode is None else "extended"
        apply_retention(client, bucket, expect.key, expect.version_id, expect.retain_until)
        head = head_version(client, bucket, expect.key, expect.version_id) or {}
        mode, until = head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")
        if mode != "COMPLIANCE" or until is None or until < expect.retain_until:
            raise VerificationError(
                f"{where}: lock is {mode} until {until} after setting COMPLIANCE until {expect.retain_until}")
    return VerifiedCopy(
        version_id=expect.version_id,
        etag=str(head.get("ETag", "")).strip('"'),
        checksum=str(head.get("ChecksumSHA256")),
        checksum_type=str(head.get("ChecksumType") or expect.checksum.kind),
        storage_class=storage_class,
        retain_until=until.astimezone(dt.UTC),
        lock_repaired=lock_repaired,
        head={**head, "VersionId": head.get("VersionId") or expect.version_id},
    )


def apply_retention(client: Any, bucket: str, key: str, version_id: str, retain_until: dt.datetime) -> None:
    """Set or extend a COMPLIANCE lock. Callers only ever pass a date at least the current one."""
    try:
        client.put_object_retention(
            Bucket=bucket, Key=key, VersionId=version_id,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": retain_until},
            ChecksumAlgorithm="SHA256",
        )
    except Exception as exc:
        raise wrap(f"PutObjectRetention on cold object {key!r} version {version_id}", exc) from exc


def cold_bucket_problem(client: Any, bucket: str) -> str | None:
    """Why the cold bucket cannot receive locked copies (missing, unversioned, no Object Lock), or None."""
    try:
        client.head_bucket(Bucket=bucket)
        versioning = client.get_bucket_versioning(Bucket=bucket).get("Status")
        try:
            lock = client.get_object_lock_configuration(Bucket=bucket).get("ObjectLockConfiguration", {})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ObjectLockConfigurationNotFoundError":
                raise
            lock = {}
    except Exception as exc:
        return f"cold bucket {bucket!r} cannot be used: {describe_s3_error(exc)[0]}"
    if versioning != "Enabled" or lock.get("ObjectLockEnabled") != "Enabled":
        return (f"cold bucket {bucket!r} must be versioned with Object Lock enabled "
                f"(versioning={versioning}, object lock={lock.get('ObjectLockEnabled')})")
    return None
