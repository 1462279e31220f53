"""What every fault scenario must end with (issue 12, item 6), checked against the servers themselves.

* after a faulted run: no row `in_progress` past its lease; every `failed` row carries a clear message;
* after the faults are off and one more run: every object replicated exactly once (one cold version, the
  row's aws_version_id); no open multipart upload on the cold bucket; no row in progress; the journal
  verifies and names every row's cold version.

Used by the fault suite (vault_pipeline_tests/faults) and the soak benchmark (benchmarks/soak_bench.py), so
it takes plain clients and a DSN rather than the test's Vault.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from vault_pipeline.journal.reader import read_entries
from vault_pipeline.journal.segments import SegmentStore
from vault_pipeline.journal.verify import verify_journal

# A message an operator can act on names what failed; these alone say nothing.
UNCLEAR_MESSAGES = {"", "none", "null", "error", "exception", "failed", "unknown error"}


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # key -> error_message
    retries: int = 0
    journal: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, message: str) -> None:
        self.problems.append(message)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems[:50], "problem_count": len(self.problems),
                "statuses": self.statuses, "failed": len(self.failed), "retries": self.retries,
                "journal": self.journal}


def rows(dsn: str, bucket: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT s3_key, status, aws_version_id, lease_owner, lease_expires_at, cold_upload_id, error_message,"
            " retry_count, failed_at, lease_expires_at < now() AS lease_expired"
            " FROM vault_secure.replication_status WHERE bucket_source = %s ORDER BY s3_key", (bucket,)).fetchall()


def failure_audits(dsn: str, bucket: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM vault_secure.audit_logs WHERE event_type = 'REPLICATION_FAILURE'"
                            " AND source_bucket = %s", (bucket,)).fetchone()[0]


def clear_message(message: str | None) -> bool:
    text = (message or "").strip()
    return len(text) >= 12 and text.lower() not in UNCLEAR_MESSAGES


def check_after_faulted_run(dsn: str, bucket: str) -> Findings:
    """The state a faulted run may leave: failures are allowed, silent or stuck rows are not."""
    found = Findings()
    for row in rows(dsn, bucket):
        found.statuses[row["status"]] = found.statuses.get(row["status"], 0) + 1
        found.retries += row["retry_count"] or 0
        if row["status"] == "in_progress" and row["lease_expired"]:
            found.add(f"{row['s3_key']}: in_progress past its lease ({row['lease_expires_at']}, "
                      f"owner {row['lease_owner']})")
        if row["status"] == "failed":
            found.failed[row["s3_key"]] = row["error_message"] or ""
            if not clear_message(row["error_message"]):
                found.add(f"{row['s3_key']}: failed without a clear error_message: {row['error_message']!r}")
            if row["failed_at"] is None:
                found.add(f"{row['s3_key']}: failed without failed_at")
    return found


def list_versions(cold: Any, bucket: str) -> dict[str, list[str]]:
    versions: dict[str, list[str]] = {}
    paginator = cold.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            versions.setdefault(version["Key"], []).append(version["VersionId"])
        for marker in page.get("DeleteMarkers", []):
            versions.setdefault(marker["Key"], []).append("delete-marker:" + marker["VersionId"])
    return versions


def check_final(dsn: str, hot_bucket: str, cold: Any, cold_bucket: str, keys: Iterable[str],
                public_keys: Iterable[str] = ()) -> Findings:
    """Everything replicated exactly once, nothing open, nothing in progress, the journal whole."""
    found = Findings()
    by_key = {row["s3_key"]: row for row in rows(dsn, hot_bucket)}
    for row in by_key.values():
        found.statuses[row["status"]] = found.statuses.get(row["status"], 0) + 1
        found.retries += row["retry_count"] or 0
    versions = list_versions(cold, cold_bucket)
    for key in keys:
        row = by_key.get(key)
        if row is None:
            found.add(f"{key}: no row")
            continue
        if row["status"] != "replicated":
            found.add(f"{key}: {row['status']} ({row['error_message']!r})")
            continue
        if versions.get(key, []) != [row["aws_version_id"]]:
            found.add(f"{key}: cold versions {versions.get(key, [])} != the row's [{row['aws_version_id']}]")
        if row["cold_upload_id"]:
            found.add(f"{key}: replicated but still names upload {row['cold_upload_id']}")
    stuck = [k for k, r in by_key.items() if r["status"] == "in_progress"]
    if stuck:
        found.add(f"{len(stuck)} row(s) still in_progress: {stuck[:5]}")
    uploads = cold.list_multipart_uploads(Bucket=cold_bucket).get("Uploads", [])
    if uploads:
        found.add(f"{len(uploads)} open multipart upload(s): {[u['Key'] for u in uploads[:5]]}")
    store = SegmentStore(cold, cold_bucket)
    report = verify_journal(store, list(public_keys))
    found.journal = report.summary()
    for problem in report.problems[:10]:
        found.add(f"journal: {problem}")
    if report.ok:
        journaled = {(e["key"], e["version_id"]) for e in read_entries(store) if e.get("action") == "copy"}
        for key in keys:
            row = by_key.get(key)
            if row and row["status"] == "replicated" and (key, row["aws_version_id"]) not in journaled:
                found.add(f"{key}: its cold version {row['aws_version_id']} has no copy entry in the journal")
    return found
