"""Bucket creation for the embedded stack and tests."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from vault_pipeline.devstack.process import DevStackError

_ALREADY_THERE = ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def ensure_bucket(client: Any, bucket: str, *, object_lock: bool) -> None:
    """Create `bucket` if it is missing. Idempotent.

    With `object_lock`, the bucket is created with Object Lock enabled (which also turns versioning on),
    and an existing bucket is checked: Object Lock cannot be added to a bucket afterwards on AWS, so a cold
    bucket without it is an error to fix by hand, not something to paper over.
    """
    try:
        client.create_bucket(Bucket=bucket, **({"ObjectLockEnabledForBucket": True} if object_lock else {}))
    except ClientError as exc:
        if _error_code(exc) not in _ALREADY_THERE:
            raise DevStackError(f"cannot create bucket {bucket!r}: {exc}") from exc
    if not object_lock:
        return
    try:
        versioning = client.get_bucket_versioning(Bucket=bucket).get("Status")
    except ClientError as exc:
        raise DevStackError(f"cannot read the versioning of bucket {bucket!r}: {exc}") from exc
    try:
        lock = client.get_object_lock_configuration(Bucket=bucket).get("ObjectLockConfiguration", {})
    except ClientError as exc:
        if _error_code(exc) != "ObjectLockConfigurationNotFoundError":
            raise DevStackError(f"cannot read the Object Lock configuration of bucket {bucket!r}: {exc}") from exc
        lock = {}
    if versioning != "Enabled" or lock.get("ObjectLockEnabled") != "Enabled":
        raise DevStackError(f"bucket {bucket!r} exists without versioning and Object Lock "
                            f"(versioning={versioning}, lock={lock or 'none'}); a cold bucket needs both")
