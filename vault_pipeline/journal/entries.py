"""What a journal entry says, per action, and how a replication_status row is rebuilt from it.

Every entry has: format (from format 2 on), seq, action, bucket, key, version_id, sha256, size, document_type,
retain_until, source_etag, time, run_id, prev_hash, entry_hash (the last four given by the flusher or the
chain).
A `copy` entry also carries every other business column of vault_secure.replication_status, so a row
rebuilt from the journal equals the row that was written. Times are ISO 8601 strings in UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

ACTIONS = ("copy", "hot_delete", "retention_extend", "report", "backup")
# Actions that record a cold write of the pipeline's own (a verification report, a tracking-database backup):
# they change no replication_status row. "backup" (issue 17) is a new action, not a new format: no field of an
# existing action changes meaning, and a reader that does not know an action stops on it with its name.
RECORD_ACTIONS = ("report", "backup")
# Entry format. 1 (entries without a "format" field): as first written. 2: "format" on every entry, and
# copy entries carry document_id and user_id; from migration 010 on, a format-2 copy entry may also carry
# retention_note (absent in earlier entries: NULL), and retention_base may be "minimum" (an optional field and
# a new value: no field changes meaning, so the format stays 2). Field names are the journal's own and never
# follow column renames: entries on the cold site are locked for decades and must stay readable as written.
FORMAT = 2

# replication_status columns a rebuild restores, i.e. everything but bookkeeping (ids, leases,
# timestamps of the row itself, open upload ids).
BUSINESS_COLUMNS = (
    "s3_key", "bucket_source", "bucket_dest", "ovh_etag", "ovh_size", "status", "retry_count",
    "error_message", "replicated_at", "failed_at", "source_last_modified", "partition_day", "source_version_id",
    "sha256", "cold_checksum", "cold_checksum_type", "part_size", "document_type", "source_document_type",
    "retention_years", "aws_object_lock_until", "retention_base", "storage_class", "aws_version_id", "aws_etag",
    "previous_cold_version_ids", "replication_count", "verified_at", "hot_deleted_at", "document_id", "user_id",
    "retention_note",
)


def _text(value: Any) -> str | None:
    """A UUID column's value as journal text (psycopg reads uuid columns as uuid.UUID)."""
    return None if value is None else str(value)


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
        "format": FORMAT,
        "action": action,
        "bucket": row["bucket_dest"],
        "key": row["s3_key"],
        "version_id": row["aws_version_id"],
        "sha256": row["sha256"],
        "size": int(row["ovh_size"]),
        "document_type": row["document_type"],
        "retain_until": iso(row["aws_object_lock_until"]),
        "source_etag": row["ovh_etag"],
        "run_id": run_id,
    }


def copy_fields(row: Mapping[str, Any], *, run_id: str | None, adopted: bool) -> dict[str, Any]:
    """The entry of a verified copy, from the replication_status row as it was just written."""
    return {
        **_written(row, "copy", run_id),
        "source_bucket": row["bucket_source"],
        "source_version_id": row["source_version_id"],
        "source_last_modified": iso(row["source_last_modified"]),
        "source_document_type": row["source_document_type"],
        "retention_years": row["retention_years"],
        "retention_base": row["retention_base"],
        "retention_note": row.get("retention_note"),  # why not the policy as written (fallback, minimum lock)
        "storage_class": row["storage_class"],
        "cold_checksum": row["cold_checksum"],
        "cold_checksum_type": row["cold_checksum_type"],
        "part_size": row["part_size"],
        "cold_etag": row["aws_etag"],
        "previous_version_ids": list(row["previous_cold_version_ids"] or []),
        "replication_count": row["replication_count"],
        "retry_count": row["retry_count"],
        "replicated_at": iso(row["replicated_at"]),
        "verified_at": iso(row["verified_at"]),
        "adopted": adopted,
        "document_id": _text(row.get("document_id")),
        "user_id": _text(row.get("user_id")),
    }


def retention_fields(row: Mapping[str, Any], *, run_id: str | None, how: str) -> dict[str, Any]:
    """A lock set or extended on an existing cold version (PutObjectRetention)."""
    return {**_written(row, "retention_extend", run_id), "lock": how}


def hot_delete_fields(row: Mapping[str, Any], *, run_id: str | None) -> dict[str, Any]:
    return {**_written(row, "hot_delete", run_id), "source_bucket": row["bucket_source"],
            "hot_deleted_at": iso(row["hot_deleted_at"])}


def report_fields(*, bucket: str, key: str, version_id: str | None, sha256: str, size: int,
                  retain_until: dt.datetime, day: dt.date, run_id: str | None) -> dict[str, Any]:
    return {
        "format": FORMAT,
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


def backup_fields(*, bucket: str, key: str, version_id: str | None, sha256: str, size: int,
                  retain_until: dt.datetime, backup_id: str, database: str, journal_next_seq: int | None,
                  run_id: str | None) -> dict[str, Any]:
    """A tracking-database backup (a pg_dump, or the backup's manifest) written to the cold site."""
    return {
        "format": FORMAT,
        "action": "backup",
        "bucket": bucket,
        "key": key,
        "version_id": version_id,
        "sha256": sha256,
        "size": size,
        "document_type": "database-backup",
        "retain_until": iso(retain_until),
        "source_etag": None,
        "run_id": run_id,
        "backup_id": backup_id,
        "database": database,  # "tracking", "dagster", or "manifest"
        # The journal position the dump contains (entries below it are in the dump): a restore replays from here.
        "journal_next_seq": journal_next_seq,
    }


def row_from_copy(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The replication_status row a copy entry describes (business columns only)."""
    last_modified = parse_time(entry["source_last_modified"])
    assert last_modified is not None
    return {
        "s3_key": entry["key"],
        "bucket_source": entry["source_bucket"],
        "bucket_dest": entry["bucket"],
        "ovh_etag": entry["source_etag"],
        "ovh_size": entry["size"],
        "status": "replicated",
        "retry_count": entry.get("retry_count") or 0,
        "error_message": None,
        "replicated_at": parse_time(entry.get("replicated_at")),
        "failed_at": None,
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
        "aws_object_lock_until": parse_time(entry["retain_until"]),
        "retention_base": entry.get("retention_base"),
        "storage_class": entry.get("storage_class"),
        "aws_version_id": entry["version_id"],
        "aws_etag": entry.get("cold_etag"),
        "previous_cold_version_ids": list(entry.get("previous_version_ids") or []),
        "replication_count": entry.get("replication_count") or 1,
        "verified_at": parse_time(entry.get("verified_at")),
        # Format 2: entries of format 1 (no "format" field) were written before these columns existed.
        "document_id": entry.get("document_id"),
        "user_id": entry.get("user_id"),
        # Optional (migration 010): entries written before it carry no note.
        "retention_note": entry.get("retention_note"),
    }
