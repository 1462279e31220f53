"""Removal of hot objects whose cold copy is verified: the only destructive step of the pipeline.

Each deletion re-checks, right before deleting, that the cold version recorded in the manifest is still
there, locked in COMPLIANCE until at least the recorded date, with our SHA-256; and that the hot object
is still the content that was copied (same ETag). Anything else keeps the hot object.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from vault_pipeline.replication.errors import describe_s3_error
from vault_pipeline.replication.inventory import strip_etag
from vault_pipeline.replication.tracking import TrackingStore
from vault_pipeline.replication.verify import META_SHA256, head_version


@dataclass
class DeletionReport:
    deleted: list[str] = field(default_factory=list)
    deleted_bytes: int = 0
    kept: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)


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
    last_day: dt.date, run_id: str | None,
) -> DeletionReport:
    report = DeletionReport()
    seen: set[int] = set()
    while True:
        rows = [r for r in store.deletable_rows(source_bucket=hot_bucket, first_day=first_day, last_day=last_day)
                if r["id"] not in seen]
        if not rows:
            return report
        for row in rows:
            seen.add(row["id"])
            key = row["s3_key"]
            try:
                problem = cold_copy_problem(cold, cold_bucket, row)
                hot_head = head_version(hot, hot_bucket, key) if problem is None else None
                if problem is None and hot_head is None:
                    problem = "already gone from the hot site"
                elif problem is None and strip_etag(hot_head.get("ETag")) != row["ovh_etag"]:
                    problem = "hot object changed since it was copied"
                if problem:
                    report.kept.append((key, problem))
                    continue
                hot.delete_object(Bucket=hot_bucket, Key=key)
            except Exception as exc:
                report.kept.append((key, f"deletion failed: {describe_s3_error(exc)[0]}"))
                continue
            size = int(hot_head.get("ContentLength", 0))
            store.mark_hot_deleted(row["id"], key, hot_bucket, run_id, {
                "sha256": row["sha256"], "cold_version_id": row["aws_version_id"], "size": size,
                "source_etag": row["ovh_etag"],
            })
            report.deleted.append(key)
            report.deleted_bytes += size
