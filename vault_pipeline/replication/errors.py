"""Errors of the copy path, each with a message an operator can act on and a retry verdict."""

from __future__ import annotations

import http.client

import psycopg
import psycopg_pool
from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError as Urllib3Error

# S3 error codes that another attempt cannot fix.
PERMANENT_CODES = frozenset({
    "NoSuchKey", "NoSuchBucket", "NotFound", "404", "AccessDenied", "403", "InvalidArgument",
    "InvalidRequest", "MetadataTooLarge", "KeyTooLongError", "InvalidObjectName", "InvalidBucketName",
    "InvalidStorageClass", "InvalidObjectState", "MethodNotAllowed", "InvalidTag", "EntityTooLarge",
    "MissingUploadObjectWithObjectLockHeaders", "InvalidRetentionPeriod",
})


class CopyError(Exception):
    """One object could not be replicated; `retryable` says whether another attempt may succeed;
    `internal` marks a bug (a TypeError, ...): never retried, and the run stops claiming."""

    def __init__(self, message: str, *, retryable: bool = True, internal: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable and not internal
        self.internal = internal


class SourceGone(CopyError):
    """The hot object was deleted after it was listed: nothing to copy until it is listed again."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class LeaseLost(CopyError):
    """This worker no longer holds the row (its lease expired and another worker took it): it must stop
    working on it and write nothing about it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class VerificationError(CopyError):
    """The cold copy exists but does not match what was sent (checksum, size, lock, class)."""


# What another attempt can fix besides S3's own error answers: the network, the database, timeouts.
TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    BotoCoreError, OSError, TimeoutError, Urllib3Error, http.client.HTTPException, psycopg.OperationalError,
    psycopg.InterfaceError, psycopg_pool.PoolTimeout,
)


def is_internal_error(exc: BaseException) -> bool:
    """A bug rather than an answer of a server or a network failure (TypeError, KeyError, ...)."""
    return not isinstance(exc, (ClientError, CopyError, *TRANSIENT_TYPES))


def s3_answer(exc: ClientError) -> tuple[str, int | None]:
    """The error code and HTTP status of a server's answer."""
    return (str(exc.response.get("Error", {}).get("Code", "")),
            exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


def condition_refused(exc: ClientError, *, conflict: bool = False) -> bool:
    """The server refused a conditional request (If-Match / If-None-Match): 412 PreconditionFailed, and with
    `conflict` also 409 ConditionalRequestConflict (a concurrent conditional write to the same key)."""
    code, status = s3_answer(exc)
    if code == "PreconditionFailed" or status == 412:
        return True
    return conflict and (code == "ConditionalRequestConflict" or status == 409)


def describe_s3_error(exc: BaseException) -> tuple[str, bool]:
    """One-line description of a boto error and whether it is worth retrying."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = error.get("Message") or ""
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        text = f"{code}" + (f" ({message})" if message and message != code else "")
        if status:
            text += f" [HTTP {status}]"
        return text, code not in PERMANENT_CODES
    if isinstance(exc, CopyError):
        return str(exc), exc.retryable
    # Programming errors are never retried as if they were transient.
    return f"{type(exc).__name__}: {exc}", isinstance(exc, TRANSIENT_TYPES)


def wrap(action: str, exc: BaseException) -> CopyError:
    if is_internal_error(exc):
        return CopyError(f"{action} failed with an internal error (a bug, not retried): {type(exc).__name__}: {exc}",
                         internal=True)
    text, retryable = describe_s3_error(exc)
    return CopyError(f"{action} failed: {text}", retryable=retryable)


def hot_object_missing(exc: BaseException) -> bool:
    """The hot site says the object (or the version being read) does not exist."""
    if not isinstance(exc, ClientError):
        return False
    code, status = s3_answer(exc)
    return code in ("NoSuchKey", "NotFound", "404", "NoSuchVersion") or status == 404


def wrap_hot(action: str, key: str, exc: BaseException) -> CopyError:
    """`wrap` for a read of the hot object: a missing object is SourceGone (a clear terminal state)."""
    if hot_object_missing(exc):
        return SourceGone(f"{action} failed: {describe_s3_error(exc)[0]}: hot object {key!r} is gone (deleted "
                          "from the hot site after it was listed); it is not retried until a listing finds it again")
    return wrap(action, exc)
