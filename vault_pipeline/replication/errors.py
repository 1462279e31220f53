"""Errors of the copy path, each with a message an operator can act on and a retry verdict."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

# S3 error codes that another attempt cannot fix.
PERMANENT_CODES = frozenset({
    "NoSuchKey", "NoSuchBucket", "NotFound", "404", "AccessDenied", "403", "InvalidArgument",
    "InvalidRequest", "MetadataTooLarge", "KeyTooLongError", "InvalidObjectName", "InvalidBucketName",
    "InvalidStorageClass", "InvalidObjectState", "MethodNotAllowed", "InvalidTag", "EntityTooLarge",
    "MissingUploadObjectWithObjectLockHeaders", "InvalidRetentionPeriod",
})


class CopyError(Exception):
    """One object could not be replicated; `retryable` says whether another attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class VerificationError(CopyError):
    """The cold copy exists but does not match what was sent (checksum, size, lock, class)."""


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
    if isinstance(exc, BotoCoreError):
        return f"{type(exc).__name__}: {exc}", True
    return f"{type(exc).__name__}: {exc}", True


def wrap(action: str, exc: BaseException) -> CopyError:
    text, retryable = describe_s3_error(exc)
    return CopyError(f"{action} failed: {text}", retryable=retryable)
