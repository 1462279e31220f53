"""Migration 008: the specification's column names for vault_secure.replication_status.

A database written by the code before the rename (migrations 001-007, rows from
vault_pipeline_tests/journal/fixtures/journal_v1, which that code wrote) is migrated in place: every row and
every value is still there under the specification's name, and the specification's own query works.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from vault_pipeline.replication.inventory import ListedObject
from vault_pipeline.replication.tracking import TrackingStore

FIXTURE = Path(__file__).resolve().parent.parent / "journal" / "fixtures" / "journal_v1"
RENAMED = {"object_key": "s3_key", "source_bucket": "bucket_source", "destination_bucket": "bucket_dest",
           "cold_version_id": "aws_version_id", "cold_etag": "aws_etag", "retain_until": "aws_object_lock_until",
           "source_etag": "ovh_etag", "file_size": "ovh_size"}
SPECIFICATION_COLUMNS = {
    "id", "s3_key", "document_id", "user_id", "bucket_source", "bucket_dest", "status", "replicated_at",
    "failed_at", "retry_count", "error_message", "aws_version_id", "aws_etag", "aws_object_lock_until",
    "ovh_etag", "ovh_size", "created_at", "updated_at",
}


def fixture_rows() -> list[dict[str, Any]]:
    return json.loads((FIXTURE / "replication_status.json").read_text("utf-8"))


def same_value(stored: Any, written: Any) -> bool:
    """A value read back from PostgreSQL against its JSON form in the fixture."""
    if isinstance(stored, dt.datetime):
        return stored == dt.datetime.fromisoformat(written)
    if isinstance(stored, dt.date):
        return stored == dt.date.fromisoformat(written)
    return stored == written


def insert_old_rows(conn: psycopg.Connection, rows: list[dict[str, Any]]) -> None:
    """Rows as the pre-rename schema stores them (every column, ids included)."""
    columns = list(rows[0])
    with conn.cursor().copy(f"COPY vault_secure.replication_status ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])
    # As if the ids had come from the sequence, the way the pre-rename code inserted them.
    conn.execute("SELECT setval(pg_get_serial_sequence('vault_secure.replication_status', 'id'), max(id))"
                 " FROM vault_secure.replication_status")


def test_a_database_of_the_previous_schema_migrates_in_place_with_every_row(tracking_dsn: str) -> None:
    old_rows = fixture_rows()
    # Two more states the fixture's run did not leave behind: a row being copied and one waiting.
    template = next(r for r in old_rows if r["status"] == "failed")
    old_rows += [
        {**template, "id": 900, "object_key": "in flight ü+%.pdf", "status": "in_progress", "error_message": None,
         "lease_owner": "run-x", "lease_expires_at": "2026-12-01T10:00:00+00:00", "cold_upload_id": "upload-1"},
        {**template, "id": 901, "object_key": "waiting.pdf", "status": "pending", "error_message": None,
         "retry_count": 0},
    ]
    statuses = {r["status"] for r in old_rows}
    assert statuses == {"pending", "in_progress", "replicated", "failed"}
    with TrackingStore(tracking_dsn, max_size=2) as store:
        assert store.migrate(through="007_restore_audit.sql")[-1] == "007_restore_audit.sql"
        with psycopg.connect(tracking_dsn) as conn:
            insert_old_rows(conn, old_rows)
            audits = json.loads((FIXTURE / "audit_logs.json").read_text("utf-8"))
            with conn.cursor().copy(f"COPY vault_secure.audit_logs ({', '.join(audits[0])}) FROM STDIN") as copy:
                for audit in audits:
                    copy.write_row([json.dumps(v) if isinstance(v, dict) else v for v in audit.values()])

        applied = store.migrate()
        assert "008_specification_columns.sql" in applied
        assert store.migrate() == []  # applied once

    with psycopg.connect(tracking_dsn) as conn:
        migrated = {r["id"]: r for r in conn.cursor(row_factory=dict_row).execute(
            "SELECT * FROM vault_secure.replication_status")}
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'vault_secure'"
            " AND table_name = 'replication_status'")}
        indexes = {r[0]: r[1] for r in conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'vault_secure'"
            " AND tablename = 'replication_status'")}
        audit_count = conn.execute("SELECT count(*) FROM vault_secure.audit_logs").fetchone()[0]

    assert columns >= SPECIFICATION_COLUMNS
    assert not set(RENAMED) & columns, "an old column name is left beside its new one"
    assert "(status)" in indexes["idx_replication_status_status"]
    assert "(user_id)" in indexes["idx_replication_status_user_id"]
    assert audit_count == len(audits)

    assert sorted(migrated) == sorted(r["id"] for r in old_rows)  # no row lost, none added
    for old in old_rows:
        row = migrated[old["id"]]
        for column, value in old.items():
            assert same_value(row[RENAMED.get(column, column)], value), (old["object_key"], column)
        assert row["document_id"] is None and row["user_id"] is None
        # A failure's time is kept from the row's last update; other rows have none.
        expected_failed_at = dt.datetime.fromisoformat(old["updated_at"]) if old["status"] == "failed" else None
        assert row["failed_at"] == expected_failed_at


def test_the_specification_query_and_the_pipeline_work_on_a_migrated_database(tracking_dsn: str) -> None:
    old_rows = [r for r in fixture_rows() if r["status"] == "replicated"][:3]
    with TrackingStore(tracking_dsn, max_size=2) as store:
        store.migrate(through="007_restore_audit.sql")
        with psycopg.connect(tracking_dsn) as conn:
            insert_old_rows(conn, [{**old_rows[0], "object_key": "test.pdf"}, *old_rows[1:]])
        store.migrate()
        with psycopg.connect(tracking_dsn) as conn:
            found = conn.cursor(row_factory=dict_row).execute(
                "SELECT * FROM vault_secure.replication_status WHERE s3_key = 'test.pdf'").fetchall()
        assert len(found) == 1 and found[0]["aws_version_id"] == old_rows[0]["cold_version_id"]
        assert found[0]["aws_object_lock_until"] == dt.datetime.fromisoformat(old_rows[0]["retain_until"])

        # The unique key followed the rename: a listing of the same key with the same ETag is no change.
        same = ListedObject("test.pdf", old_rows[0]["source_etag"], old_rows[0]["file_size"],
                            dt.datetime.fromisoformat(old_rows[0]["source_last_modified"]))
        bucket = old_rows[0]["source_bucket"]
        assert store.register([same], source_bucket=bucket, destination_bucket="cold").new == 0
        new = store.register([ListedObject("new.pdf", "e", 1, dt.datetime.now(dt.UTC))], source_bucket=bucket,
                             destination_bucket="cold")
        assert new.new == 1
        with psycopg.connect(tracking_dsn) as conn, pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO vault_secure.replication_status (s3_key, bucket_source, bucket_dest, ovh_etag,"
                         " ovh_size, source_last_modified, partition_day) VALUES ('new.pdf', %s, 'cold', 'e', 1,"
                         " now(), current_date)", (bucket,))
        with psycopg.connect(tracking_dsn) as conn, pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO vault_secure.replication_status (s3_key, bucket_source, bucket_dest, ovh_etag,"
                         " ovh_size, source_last_modified, partition_day) VALUES ('neg.pdf', %s, 'cold', 'e', -1,"
                         " now(), current_date)", (bucket,))
