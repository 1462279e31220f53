"""Removal of hot objects whose cold copy is verified: the only destructive step of the pipeline.

Each deletion re-checks, right before deleting, that the cold version recorded in the manifest is still
there, locked in COMPLIANCE until at least the recorded date, with our SHA-256; and that the hot object
is still the content that was copied (same ETag). Anything else keeps the hot object.

The DELETE itself deletes only the verified bytes, so an upload landing between that check and the DELETE
survives: on a versioned hot bucket it names the copied VersionId; otherwise it carries
`If-Match: <copied ETag>` (the server answers 412 when the object changed). A server that silently
ignored If-Match would delete the new bytes, so before relying on it the bucket is probed once per process:
a conditional DELETE of a sentinel object with a wrong ETag must answer 412. If it does not and the bucket
is not versioned, hot deletion refuses to run (HotDeletionRefused).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from vault_pipeline.replication.errors import condition_refused, describe_s3_error, s3_answer
from vault_pipeline.replication.inventory import PROBE_PREFIX, strip_etag
from vault_pipeline.replication.shards import Shard
from vault_pipeline.replication.tracking import TrackingStore
from vault_pipeline.replication.verify import META_SHA256, head_version


@dataclass
class DeletionReport:
    deleted: list[str] = field(default_factory=list)
    deleted_bytes: int = 0
    kept: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)


class HotDeletionRefused(RuntimeError):
    """The hot site cannot delete only the verified bytes: deleting would risk uncopied data."""


# (endpoint, bucket) -> None when the server honours If-Match on DeleteObject, else what it did instead.
_PROBED: dict[tuple[str, str], str | None] = {}
_PROBE_LOCK = threading.Lock()


def conditional_delete_problem(hot: Any, bucket: str) -> str | None:
    """None when the hot server honours `If-Match` on DeleteObject, else what it did instead.

    Probed for real: a sentinel object under PROBE_PREFIX (never listed as a document) is deleted with a
    wrong ETag, which must be refused with 412. The answer is kept for the process, per endpoint and
    bucket."""
    cache_key = (str(getattr(getattr(hot, "meta", None), "endpoint_url", "")), bucket)
    with _PROBE_LOCK:
        if cache_key in _PROBED:
            return _PROBED[cache_key]
        sentinel = f"{PROBE_PREFIX}conditional-delete-{uuid.uuid4().hex}"
        try:
            hot.put_object(Bucket=bucket, Key=sentinel, Body=b"vault-pipeline conditional delete probe")
        except ClientError as exc:
            raise HotDeletionRefused(
                f"hot deletion refused: could not write the probe object {sentinel!r} that checks whether hot "
                f"bucket {bucket!r} honours If-Match on DeleteObject ({describe_s3_error(exc)[0]}). Allow "
                f"PutObject and DeleteObject on {PROBE_PREFIX}* or enable versioning on the hot bucket.") from exc
        problem: str | None
        try:
            hot.delete_object(Bucket=bucket, Key=sentinel, IfMatch='"00000000000000000000000000000000"')
            problem = "a DELETE with If-Match and a wrong ETag deleted the object (the condition is ignored)"
        except ClientError as exc:
            code, status = s3_answer(exc)
            if condition_refused(exc):
                problem = None
            elif isinstance(status, int) and status >= 500 and status != 501:  # no answer yet: ask next time
                with contextlib.suppress(ClientError):
                    hot.delete_object(Bucket=bucket, Key=sentinel)
                raise HotDeletionRefused(
                    f"hot deletion refused for now: the probe of If-Match on DeleteObject in hot bucket {bucket!r} "
                    f"answered {code or '?'} [HTTP {status}]; the next run asks again") from exc
            else:
                problem = f"a DELETE with If-Match and a wrong ETag answered {code or '?'} [HTTP {status}], not 412"
        with contextlib.suppress(ClientError):  # already gone (or a delete marker): harmless either way
            hot.delete_object(Bucket=bucket, Key=sentinel)
        _PROBED[cache_key] = problem
        return problem


def hot_bucket_versioned(hot: Any, bucket: str) -> bool:
    return hot.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled"


def refusal_message(bucket: str, problem: str) -> str:
    return (f"hot deletion refused: hot bucket {bucket!r} is not versioned and its server does not honour "
            f"If-Match on DeleteObject ({problem}), so a new upload landing between verification and deletion "
            "would be deleted without ever being copied. Enable versioning on the hot bucket (deletions then "
            "name the copied VersionId) or set DELETE_FROM_OVH_AFTER_REPLICATION=false.")


def cold_copy_problem(cold: Any, cold_bucket: str, row: dict[str, Any]) -> str | None:
    head = head_version(cold, cold_bucket, row["s3_key"], row["aws_version_id"])
    if head is None:
        return f"cold version {row['aws_version_id']} not found"
    if (head.get("Metadata") or {}).get(META_SHA256) != row["sha256"]:
        return "cold copy's SHA-256 metadata differs from the manifest"
    if head.get("ObjectLockMode") != "COMPLIANCE":
        return f"cold copy lock mode is {head.get('ObjectLockMode')}"
    until = head.get("ObjectLockRetainUntilDate")
    if until is None or until < dt.datetime.now(dt.UTC):
        return f"cold copy retention ends {until}"
    return None


def delete_verified_hot_objects(
    *, store: TrackingStore, hot: Any, hot_bucket: str, cold: Any, cold_bucket: str, first_day: dt.date,
    last_day: dt.date, run_id: str | None, shard: Shard | None = None,
) -> DeletionReport:
    """Delete the hot objects of the day range whose cold copy is verified (of `shard`'s slice only, for a
    shard run). Raises HotDeletionRefused, before deleting anything, when the hot site cannot delete only the
    verified bytes."""
    report = DeletionReport()
    seen: set[int] = set()
    versioned: bool | None = None
    while True:
        rows = [r for r in store.deletable_rows(source_bucket=hot_bucket, first_day=first_day, last_day=last_day,
                                                shard=shard)
                if r["id"] not in seen]
        if not rows:
            return report
        if versioned is None:
            versioned = hot_bucket_versioned(hot, hot_bucket)
            if not versioned and (problem := conditional_delete_problem(hot, hot_bucket)):
                raise HotDeletionRefused(refusal_message(hot_bucket, problem))
        for row in rows:
            seen.add(row["id"])
            key = row["s3_key"]
            # On a versioned bucket the copied version is named; otherwise If-Match on the copied ETag.
            version = row["source_version_id"] if versioned else None
            try:
                problem = cold_copy_problem(cold, cold_bucket, row)
                hot_head = head_version(hot, hot_bucket, key, version) if problem is None else None
                if problem is None and hot_head is None:
                    problem = "already gone from the hot site"
                elif problem is None and strip_etag(hot_head.get("ETag")) != row["ovh_etag"]:
                    problem = "hot object changed since it was copied"
                elif problem is None and version is None and versioned and (
                        probed := conditional_delete_problem(hot, hot_bucket)) is not None:
                    # A version without an id (written before versioning): only If-Match can pin it.
                    problem = f"no copied VersionId recorded and If-Match is not honoured ({probed})"
                if problem:
                    report.kept.append((key, problem))
                    continue
                if version:
                    hot.delete_object(Bucket=hot_bucket, Key=key, VersionId=version)
                else:
                    hot.delete_object(Bucket=hot_bucket, Key=key, IfMatch=f'"{row["ovh_etag"]}"')
            except ClientError as exc:
                if condition_refused(exc):
                    report.kept.append((key, "hot object changed since it was verified (conditional DELETE "
                                              "refused, 412): the new content is copied by the next run"))
                else:
                    report.kept.append((key, f"deletion failed: {describe_s3_error(exc)[0]}"))
                continue
            except Exception as exc:
                report.kept.append((key, f"deletion failed: {describe_s3_error(exc)[0]}"))
                continue
            size = int(hot_head.get("ContentLength", 0))
            store.mark_hot_deleted(row["id"], key, hot_bucket, run_id, {
                "sha256": row["sha256"], "cold_version_id": row["aws_version_id"], "size": size,
                "source_etag": row["ovh_etag"],
                "deleted": f"version {version}" if version else f'If-Match "{row["ovh_etag"]}"',
            })
            report.deleted.append(key)
            report.deleted_bytes += size
