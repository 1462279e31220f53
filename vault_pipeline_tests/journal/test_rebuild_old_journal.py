"""A journal written before the column rename (entry format 1) still rebuilds the tracking database row for
row. The segments in fixtures/journal_v1 are the exact bytes the cold site stored for the pre-rename code
(commit 24866c0, scenario in make_fixture.py.txt); replication_status.json holds the rows that code wrote."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from vault_pipeline.devstack.buckets import ensure_bucket
from vault_pipeline.journal.entries import BUSINESS_COLUMNS
from vault_pipeline.journal.rebuild import rebuild_tracking_db
from vault_pipeline.journal.segments import SegmentStore, decode_segment
from vault_pipeline_tests.conftest import Vault

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "journal_v1"
OLD_NAMES = {"s3_key": "object_key", "bucket_source": "source_bucket", "bucket_dest": "destination_bucket",
             "aws_version_id": "cold_version_id", "aws_etag": "cold_etag", "aws_object_lock_until": "retain_until",
             "ovh_etag": "source_etag", "ovh_size": "file_size"}
ADDED_SINCE = ("document_id", "user_id", "failed_at", "retention_note")  # columns format-1 entries cannot know: NULL


def as_written(value: Any) -> Any:
    """A value read back from PostgreSQL in the JSON form of the fixture."""
    return value.isoformat() if isinstance(value, dt.date | dt.datetime) else value


def test_a_format_1_journal_rebuilds_the_rows_it_was_written_from(vault: Vault, secondary_dsn: str) -> None:
    manifest = json.loads((FIXTURE / "manifest.json").read_text("utf-8"))
    cold_bucket = manifest["cold_bucket"]  # the entries name it; hot deletions are matched on it
    ensure_bucket(vault.cold, cold_bucket, object_lock=True)
    store = SegmentStore(vault.cold, cold_bucket)
    now = dt.datetime.now(dt.UTC)
    for key in manifest["objects"]:
        body = (FIXTURE / "objects" / key.replace("/", "__")).read_bytes()
        assert all("format" not in entry for entry in decode_segment(key, body))  # really format 1
        store.put_once(key, body, content_type="application/x-ndjson", kind="journal-segment", now=now)

    report = rebuild_tracking_db(secondary_dsn, store, mode="full", source_bucket=manifest["hot_bucket"])
    assert report.unrebuildable == [] and report.rebuilt_from_head == []

    written = {r["object_key"]: r for r in json.loads((FIXTURE / "replication_status.json").read_text("utf-8"))
               if r["status"] == "replicated"}
    with psycopg.connect(secondary_dsn) as conn:
        rebuilt = {r["s3_key"]: r for r in conn.cursor(row_factory=dict_row).execute(
            f"SELECT {', '.join(BUSINESS_COLUMNS)} FROM vault_secure.replication_status")}
    assert sorted(rebuilt) == sorted(written)
    assert any(r["hot_deleted_at"] for r in written.values())  # hot deletions in later segments were applied
    assert any(r["replication_count"] == 2 for r in written.values())  # and a re-replicated source
    for key, row in written.items():
        for column in BUSINESS_COLUMNS:
            if column in ADDED_SINCE:
                assert rebuilt[key][column] is None, (key, column)
                continue
            old = OLD_NAMES.get(column, column)
            assert as_written(rebuilt[key][column]) == row[old], f"{key!r}: {column} != {old} as written"


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_old_and_new_entries_replay_into_one_journal(vault: Vault, secondary_dsn: str) -> None:
    """Format-2 entries carry the application's ids; a rebuild restores them."""
    document_id, user_id = "6f1c1a9e-8b0e-4c8e-9a55-0f4f5e3f1a01", "0b7e4f1c-2d3a-4b5c-8d9e-0f1a2b3c4d5e"
    vault.put("ids.pdf", b"with ids", {"document-type": "invoice", "document-id": document_id, "user-id": user_id})
    assert all(r.success for r in vault.sensor_and_runs())
    copy = next(e for e in vault.journal_entries() if e["action"] == "copy")
    assert (copy["format"], copy["document_id"], copy["user_id"]) == (2, document_id, user_id)
    rebuild_tracking_db(secondary_dsn, vault.segments(), mode="full", source_bucket=vault.hot_bucket)
    with psycopg.connect(secondary_dsn) as conn:
        row = conn.cursor(row_factory=dict_row).execute(
            "SELECT * FROM vault_secure.replication_status WHERE s3_key = 'ids.pdf'").fetchone()
    assert (str(row["document_id"]), str(row["user_id"])) == (document_id, user_id)
