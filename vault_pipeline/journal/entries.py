"""What a journal entry says, per action, and how a replication_status row is rebuilt from it.

Every entry has: seq, action, bucket, key, version_id, sha256, size, document_type, retain_until,
source_etag, time, run_id, prev_hash, entry_hash (the last four given by the flusher or the chain).
A `copy` entry also carries every other business column of vault_secure.replication_status, so a row
rebuilt from the journal equals the row that was written. Times are ISO 8601 strings in UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

ACTIONS = ("copy", "hot_delete", "retention_extend", "report")

# replication_status columns a rebuild restores, i.e. everything but bookkeeping (ids, leases,
# timestamps of the row itself, open upload ids).
BUSINESS_COLUMNS = (
    "object_key", "source_bucket", "destination_bucket", "source_etag", "file_size", "status", "retry_count",
    "error_message", "replicated_at", "source_last_modified", "partition_day", "source_version_id", "sha256",
    "cold_checksum", "cold_checksum_type", "part_size", "document_type", "source_document_type",
    "retention_years", "retain_until", "retention_base", "storage_class", "cold_version_id", "cold_etag",
    "previous_cold_version_ids", "replication_count", "verified_at", "hot_deleted_at",
)


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r} in a journal entry: times must be timezone-aware")
    return value.astimezone(dt.UTC).isoformat()


def parse_time(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    return dt.datetime.fromisoformat(str(value)).astimezone(dt.UTC)


def _written(row: Mapping[str, Any], action: str, run_id: str | None) -> dict[str, Any]:
    """The fields every entry about a row's cold version has."""
    return {
        "action": action,
        "bucket": row["destination_bucket"],
        "key": row["object_key"],
        "version_id": row["cold_version_id"],
        "sha256": row["sha256"],
        "size": int(row["file_size"]),
        "document_type": row["document_type"],
        "retain_until": iso(row["retain_until"]),
        "source_etag": row["source_etag"],
        "run_id": run_id,
    }


def copy_fields(row: Mapping[str, Any], *, run_id: str | None, adopted: bool) -> dict[str, Any]:
    """The entry of a verified copy, from the replication_status row as it was just written."""
    return {
        **_written(row, "copy", run_id),
        "source_bucket": row["source_bucket"],
        "source_version_id": row["source_version_id"],
        "source_last_modified": iso(row["source_last_modified"]),
        "source_document_type": row["source_document_type"],
        "retention_years": row["retention_years"],
        "retention_base": row["retention_base"],
        "storage_class": row["storage_class"],
        "cold_checksum": row["cold_checksum"],
        "cold_checksum_type": row["cold_checksum_type"],
        "part_size": row["part_size"],
        "cold_etag": row["cold_etag"],
        "previous_version_ids": list(row["previous_cold_version_ids"] or []),
        "replication_count": row["replication_count"],
        "retry_count": row["retry_count"],
        "replicated_at": iso(row["replicated_at"]),
        "verified_at": iso(row["verified_at"]),
        "adopted": adopted,
    }


def retention_fields(row: Mapping[str, Any], *, run_id: str | None, how: str) -> dict[str, Any]:
    """A lock set or extended on an existing cold version (PutObjectRetention)."""
    return {**_written(row, "retention_extend", run_id), "lock": how}


def hot_delete_fields(row: Mapping[str, Any], *, run_id: str | None) -> dict[str, Any]:
    return {**_written(row, "hot_delete", run_id), "source_bucket": row["source_bucket"],
            "hot_deleted_at": iso(row["hot_deleted_at"])}


def report_fields(*, bucket: str, key: str, version_id: str | None, sha256: str, size: int,
                  retain_until: dt.datetime, day: dt.date, run_id: str | None) -> dict[str, Any]:
    return {
        "action": "report",
        "bucket": bucket,
        "key": key,
        "version_id": version_id,
        "sha256": sha256,
        "size": size,
        "document_type": "verification-report",
        "retain_until": iso(retain_until),
        "source_etag": None,
        "run_id": run_id,
        "day": day.isoformat(),
    }


def row_from_copy(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The replication_status row a copy entry describes (business columns only)."""
    last_modified = parse_time(entry["source_last_modified"])
    assert last_modified is not None
    return {
        "object_key": entry["key"],
        "source_bucket": entry["source_bucket"],
        "destination_bucket": entry["bucket"],
        "source_etag": entry["source_etag"],
        "file_size": entry["size"],
        "status": "replicated",
        "retry_count": entry.get("retry_count") or 0,
        "error_message": None,
        "replicated_at": parse_time(entry.get("replicated_at")),
        "source_last_modified": last_modified,
        "partition_day": last_modified.date(),
        "source_version_id": entry.get("source_version_id"),
        "sha256": entry["sha256"],
        "cold_checksum": entry.get("cold_checksum"),
        "cold_checksum_type": entry.get("cold_checksum_type"),
        "part_size": entry.get("part_size"),
        "document_type": entry["document_type"],
        "source_document_type": entry.get("source_document_type"),
        "retention_years": entry.get("retention_years"),
        "retain_until": parse_time(entry["retain_until"]),
        "retention_base": entry.get("retention_base"),
        "storage_class": entry.get("storage_class"),
        "cold_version_id": entry["version_id"],
        "cold_etag": entry.get("cold_etag"),
        "previous_cold_version_ids": list(entry.get("previous_version_ids") or []),
        "replication_count": entry.get("replication_count") or 1,
        "verified_at": parse_time(entry.get("verified_at")),
    }
