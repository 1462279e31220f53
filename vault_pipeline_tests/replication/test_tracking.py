"""The PostgreSQL manifest on a real server: bulk diff, claims, leases, results."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterator

import psycopg
import pytest

from vault_pipeline.replication.identity import application_ids
from vault_pipeline.replication.inventory import ListedObject
from vault_pipeline.replication.tracking import ReplicationOutcome, TrackingDatabaseError, TrackingStore

NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
DAY = NOW.date()


@pytest.fixture
def store(tracking_dsn: str) -> Iterator[TrackingStore]:
    with TrackingStore(tracking_dsn) as s:
        applied = s.migrate()
        assert applied[0] == "001_initial.sql" and applied == sorted(applied)
        assert s.migrate() == []  # idempotent
        yield s


def listed(key: str, etag: str = "e1", size: int = 10) -> ListedObject:
    return ListedObject(key, etag, size, NOW)


def claim(store: TrackingStore, owner: str, limit: int = 100, lease: float = 60, since: dt.datetime | None = None):
    return store.claim(owner=owner, source_bucket="hot", first_day=DAY, last_day=DAY, limit=limit,
                       lease_seconds=lease, not_attempted_since=since or store.db_now())


def outcome(etag: str = "e1", version: str = "v1") -> ReplicationOutcome:
    return ReplicationOutcome(
        source_etag=etag, source_version_id=None, file_size=10, source_last_modified=NOW, sha256="a" * 64,
        cold_checksum="x", cold_checksum_type="FULL_OBJECT", part_size=None, document_type="general",
        source_document_type=None, retention_years=50, retain_until=NOW + dt.timedelta(days=365 * 50),
        retention_base="last-modified", storage_class="DEEP_ARCHIVE", cold_version_id=version, cold_etag="c",
    )


def test_register_is_a_diff(store: TrackingStore) -> None:
    first = store.register([listed("a"), listed("b")], source_bucket="hot", destination_bucket="cold")
    assert (first.new, first.changed, first.days) == (2, 0, {DAY: 2})
    again = store.register([listed("a"), listed("b")], source_bucket="hot", destination_bucket="cold")
    assert (again.new, again.changed) == (0, 0)
    changed = store.register([listed("a", "e2"), listed("c")], source_bucket="hot", destination_bucket="cold")
    assert (changed.new, changed.changed) == (1, 1)


def test_claims_never_overlap_and_expired_leases_are_reclaimed(store: TrackingStore) -> None:
    store.register([listed(f"k{i}") for i in range(10)], source_bucket="hot", destination_bucket="cold")
    first = claim(store, "run-1", limit=6, lease=1)
    second = claim(store, "run-2", limit=6)
    assert len(first) == 6 and len(second) == 4
    assert not {r.id for r in first} & {r.id for r in second}
    assert claim(store, "run-3") == []
    time.sleep(1.2)  # run-1 died: its lease expires
    third = claim(store, "run-3")
    assert {r.id for r in third} == {r.id for r in first}
    assert all(r.reclaimed for r in third)


def test_a_run_does_not_reclaim_what_it_already_tried(store: TrackingStore) -> None:
    store.register([listed("f")], source_bucket="hot", destination_bucket="cold")
    since = store.db_now()
    [row] = claim(store, "run", since=since)
    store.mark_failed(row, "run", error="boom", failed_attempts=3, run_id="r", source_bucket="hot")
    assert claim(store, "run", since=since) == []  # same run: done with it
    [again] = claim(store, "next-run")  # a later run retries it
    assert again.retry_count == 3


def test_results_need_the_lease_and_follow_the_source(store: TrackingStore, tracking_dsn: str) -> None:
    store.register([listed("x"), listed("y")], source_bucket="hot", destination_bucket="cold")
    store.register([listed("x")], source_bucket="other-hot", destination_bucket="cold")
    rows = {r.s3_key: r for r in claim(store, "run")}
    assert store.mark_replicated(rows["x"], "someone-else", outcome(), run_id="r", duration_s=1) == "lost"
    assert store.mark_replicated(rows["x"], "run", outcome(), run_id="r", duration_s=1) == "replicated"
    # y's source changed while it was being copied: the copy is kept as history, the row stays pending.
    store.register([listed("y", "e2")], source_bucket="hot", destination_bucket="cold")
    assert store.mark_replicated(rows["y"], "run", outcome(version="v-old"), run_id="r", duration_s=1) == "pending"
    [y] = store.rows("hot", ["y"])
    assert y["status"] == "pending" and y["ovh_etag"] == "e2"
    with psycopg.connect(tracking_dsn) as conn:
        audits = conn.execute("SELECT object_key, source_bucket FROM vault_secure.audit_logs ORDER BY id").fetchall()
    assert audits == [("x", "hot"), ("y", "hot")]  # never the other bucket's row of the same key


def test_replicated_rows_must_be_complete(store: TrackingStore, tracking_dsn: str) -> None:
    store.register([listed("z")], source_bucket="hot", destination_bucket="cold")
    with psycopg.connect(tracking_dsn) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE vault_secure.replication_status SET status = 'replicated' WHERE s3_key = 'z'")


def test_row_level_security_is_enabled(store: TrackingStore, tracking_dsn: str) -> None:
    with psycopg.connect(tracking_dsn) as conn:
        flags = conn.execute("SELECT relname, relrowsecurity FROM pg_class WHERE relname IN "
                             "('replication_status', 'audit_logs') ORDER BY 1").fetchall()
        policies = conn.execute("SELECT tablename, policyname, roles::text FROM pg_policies "
                                "WHERE schemaname = 'vault_secure' AND tablename IN ('replication_status', "
                                "'audit_logs') ORDER BY 1").fetchall()
    assert flags == [("audit_logs", True), ("replication_status", True)]
    assert [(t, r) for t, _, r in policies] == [
        ("audit_logs", "{vault_admin}"), ("replication_status", "{vault_admin}")]


def test_unreachable_database_is_a_clear_error_without_password() -> None:
    with pytest.raises(TrackingDatabaseError, match="unreachable") as info:
        TrackingStore("postgresql://vault:s3cret@127.0.0.1:9/vault", connect_timeout=1)
    assert "s3cret" not in str(info.value)


def test_failed_at_is_set_on_every_failure_and_kept_until_replicated(store: TrackingStore) -> None:
    store.register([listed("flaky")], source_bucket="hot", destination_bucket="cold")
    [row] = claim(store, "run-1")
    store.mark_failed(row, "run-1", error="first", failed_attempts=3, run_id="r1", source_bucket="hot")
    [first] = store.rows("hot", ["flaky"])
    assert first["status"] == "failed" and first["failed_at"] is not None
    [row] = claim(store, "run-2")
    store.mark_failed(row, "run-2", error="second", failed_attempts=3, run_id="r2", source_bucket="hot")
    [second] = store.rows("hot", ["flaky"])
    assert second["failed_at"] > first["failed_at"] and second["retry_count"] == 6
    [row] = claim(store, "run-3")
    [held] = store.rows("hot", ["flaky"])
    assert held["status"] == "in_progress" and held["failed_at"] == second["failed_at"]  # kept while retried
    assert store.mark_replicated(row, "run-3", outcome(), run_id="r3", duration_s=1) == "replicated"
    [done] = store.rows("hot", ["flaky"])
    assert done["failed_at"] is None and done["error_message"] is None


def test_application_ids_are_recorded_as_uuids(store: TrackingStore) -> None:
    store.register([listed("ids")], source_bucket="hot", destination_bucket="cold")
    [row] = claim(store, "run")
    document_id = "6f1c1a9e-8b0e-4c8e-9a55-0f4f5e3f1a01"
    with_ids = dataclasses.replace(outcome(), document_id=document_id, user_id=None)
    assert store.mark_replicated(row, "run", with_ids, run_id="r", duration_s=1) == "replicated"
    [done] = store.rows("hot", ["ids"])
    assert (str(done["document_id"]), done["user_id"]) == (document_id, None)


@pytest.mark.parametrize(("metadata", "document_id", "user_id", "notes"), [
    ({}, None, None, 0),
    ({"document-id": "6F1C1A9E-8B0E-4C8E-9A55-0F4F5E3F1A01", "User-Id": " 0b7e4f1c-2d3a-4b5c-8d9e-0f1a2b3c4d5e "},
     "6f1c1a9e-8b0e-4c8e-9a55-0f4f5e3f1a01", "0b7e4f1c-2d3a-4b5c-8d9e-0f1a2b3c4d5e", 0),
    ({"document-id": "INV-2026-0042", "user-id": "x" * 300}, None, None, 2),
    ({"document_id": ""}, None, None, 0),
])
def test_application_ids_from_metadata(metadata: dict[str, str], document_id: str | None, user_id: str | None,
                                       notes: int) -> None:
    ids = application_ids(metadata)
    assert (ids.document_id, ids.user_id, len(ids.notes)) == (document_id, user_id, notes)
    assert all("not a UUID: recorded as NULL" in note and len(note) < 200 for note in ids.notes)
