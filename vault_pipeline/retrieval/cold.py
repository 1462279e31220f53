"""The cold-site calls of getting a version back: the `x-amz-restore` header, RestoreObject of an exact
version with its answers sorted out (`request_restore`), and a streamed read of a version in bounded
chunks that hashes as it goes (`stream_version`). Shared by the operator's restore (`restore.py`) and the
restore drill (`drills.py`).

Deep Archive cannot be read until a restore completes (Standard: within 12 h, Bulk: within 48 h).
SeaweedFS has no restore (RestoreObject: MethodNotAllowed) and serves archived objects directly; the moto
server models Deep Archive like AWS.

Plain Python: no Dagster here.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

from vault_pipeline.replication.errors import describe_s3_error

MiB = 1024 * 1024
TIERS: tuple[str, ...] = ("Bulk", "Standard", "Expedited")
# Storage classes whose objects must be restored before GetObject (AWS answers InvalidObjectState).
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
# RestoreObject refusals that mean "no restore here, try reading directly": SeaweedFS answers
# MethodNotAllowed (no restore at all), others NotImplemented, AWS and moto InvalidObjectState for a
# storage class that needs none.
NO_RESTORE_CODES = frozenset({"MethodNotAllowed", "NotImplemented", "InvalidObjectState"})

_ONGOING = re.compile(r'ongoing-request\s*=\s*"(true|false)"', re.IGNORECASE)
_EXPIRY = re.compile(r'expiry-date\s*=\s*"([^"]+)"', re.IGNORECASE)


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
    response = getattr(client, "streaming", client).get_object(**kwargs)  # never buffered whole
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

