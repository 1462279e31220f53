"""The write journal, end to end on the real servers: what a replication run journals, how seqs are
given (no `last + 1` skip), and how a run killed at each instant of the copy/journal sequence is repaired
by the next one without journaling anything twice."""

from __future__ import annotations

import threading
import time
from collections import Counter

import psycopg
import pytest

from vault_pipeline.journal import outbox
from vault_pipeline.journal.entries import copy_fields
from vault_pipeline.journal.reader import read_entries
from vault_pipeline.journal.segments import JournalError, SegmentStore
from vault_pipeline.journal.writer import JournalWriter
from vault_pipeline_tests.conftest import Vault, sql, today_key


def writer(vault: Vault, **kwargs: int) -> JournalWriter:
    vault.store  # noqa: B018  (migrated)
    return JournalWriter(vault.dsn, SegmentStore(vault.cold, vault.cold_bucket), **kwargs)


def copy_entries(vault: Vault) -> Counter[str]:
    return Counter(e["key"] for e in vault.journal_entries() if e["action"] == "copy")


def test_a_replication_run_journals_every_copy_in_locked_standard_segments(vault: Vault) -> None:
    for i in range(5):
        vault.put(f"docs/j-{i}.pdf", f"document {i}".encode(), {"document-type": "invoice"})
    runs = vault.sensor_and_runs()
    assert all(r.success for r in runs)

    entries = vault.journal_entries()  # chain checked from seq 1
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    copies = [e for e in entries if e["action"] == "copy"]
    assert sorted(e["key"] for e in copies) == [f"docs/j-{i}.pdf" for i in range(5)]
    for entry in copies:
        row = vault.row(entry["key"])
        assert entry["version_id"] == row["aws_version_id"]
        assert entry["sha256"] == row["sha256"]
        assert entry["size"] == row["ovh_size"]
        assert entry["document_type"] == "invoice"
        assert entry["source_etag"] == row["ovh_etag"]
        assert entry["retain_until"] == row["aws_object_lock_until"].isoformat()
        assert entry["run_id"] == runs[0].run_id
        assert row["journaled"] is True

    segment = next(iter(vault.segments().list_segments()))
    head = vault.cold.head_object(Bucket=vault.cold_bucket, Key=segment.key)
    assert head.get("StorageClass", "STANDARD") == "STANDARD"
    assert head["ObjectLockMode"] == "COMPLIANCE"
    metadata = runs[0].asset_materializations_for_node("cold_copies")[0].metadata
    assert metadata["journal_entries_written"].value == len(entries)
    assert sql(vault.dsn, "SELECT count(*) FROM vault_secure.journal_entries WHERE written_at IS NULL") == [(0,)]


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_late_commit_gets_a_later_seq_and_is_never_skipped(vault: Vault) -> None:
    """The classic bug: ids are handed out at insert, commits land in another order, and a reader that
    follows `last + 1` skips the late one for good. Here seqs are given only to committed entries."""
    journal = writer(vault)
    base = {"bucket": vault.cold_bucket, "version_id": "v", "sha256": "0" * 64, "size": 1, "document_type": "x",
            "retain_until": None, "source_etag": "e", "run_id": None}
    late = psycopg.connect(vault.dsn)
    late_id = outbox.enqueue(late, {**base, "action": "report", "key": "late"})  # lower id, not committed
    with psycopg.connect(vault.dsn) as early:
        early_id = outbox.enqueue(early, {**base, "action": "report", "key": "early"})
    assert late_id < early_id

    first = journal.flush()
    assert first.entries == 1
    late.commit()
    late.close()
    second = journal.flush()
    assert second.entries == 1

    entries = list(read_entries(vault.segments()))
    assert [(e["seq"], e["key"]) for e in entries] == [(1, "early"), (2, "late")]


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_concurrent_flushers_write_each_entry_once_with_contiguous_seqs(vault: Vault) -> None:
    base = {"bucket": vault.cold_bucket, "version_id": "v", "sha256": "0" * 64, "size": 1, "document_type": "x",
            "retain_until": None, "source_etag": "e", "run_id": None, "action": "report"}
    errors: list[BaseException] = []

    def produce_and_flush(worker: int) -> None:
        try:
            journal = writer(vault, max_entries_per_segment=7)
            for batch in range(5):
                with psycopg.connect(vault.dsn) as conn:
                    for i in range(6):
                        outbox.enqueue(conn, {**base, "key": f"w{worker}-{batch}-{i}"})
                journal.flush()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=produce_and_flush, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    entries = list(read_entries(vault.segments()))
    assert [e["seq"] for e in entries] == list(range(1, 91))
    assert len({e["key"] for e in entries}) == 90
    assert vault.segments().rewritten_segments() == {}


@pytest.mark.parametrize("kill_at", ["before_mark_replicated", "before_flush", "after_sequence",
                                     "after_segment_put"])
def test_a_run_killed_between_copy_and_journal_is_repaired_by_the_next_run(vault: Vault, kill_at: str) -> None:
    keys = [f"crash/{kill_at}-{i}.pdf" for i in range(6)]
    for i, key in enumerate(keys):
        vault.put(key, f"crash body {i}".encode() * 50, {"document-type": "payslip"})
    vault.run_sensor()  # registers the rows; the killed worker then runs the partition
    worker = vault.start_worker(VAULT_TEST_KILL_AT=kill_at, REPLICATION_CONCURRENCY="2")
    worker.communicate(timeout=240)
    assert worker.returncode == 137, f"worker should have died at {kill_at}"

    # What the crash left behind, before any repair.
    left = sql(vault.dsn, "SELECT count(*) FILTER (WHERE seq IS NULL), count(*) FILTER (WHERE seq IS NOT NULL"
                          " AND written_at IS NULL) FROM vault_secure.journal_entries")[0]
    if kill_at == "before_flush":
        assert left[0] >= len(keys)  # every copy committed with its entry, none sequenced
    if kill_at in ("after_sequence", "after_segment_put"):
        assert left[1] > 0  # sequenced, not confirmed written
    on_storage_before = len(list(vault.segments().list_segments()))
    if kill_at == "after_segment_put":
        assert on_storage_before == 1  # the segment made it; the database does not know yet

    if kill_at == "before_mark_replicated":
        time.sleep(float(vault.env["VAULT_LEASE_SECONDS"]) + 1)  # the dead worker's leases run out
    result = vault.run_partition(today_key())  # the next run, in a healthy process
    assert result.success

    copies = copy_entries(vault)
    assert copies == Counter({key: 1 for key in keys}), "every replicated object journaled exactly once"
    for key in keys:
        row = vault.row(key)
        assert row["status"] == "replicated"
        assert len(vault.cold_versions(key)) == 1  # adopted, never copied twice
    assert sql(vault.dsn, "SELECT count(*) FROM vault_secure.journal_entries WHERE written_at IS NULL") == [(0,)]
    assert vault.segments().rewritten_segments() == {}  # no segment written twice


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_rows_replicated_without_an_entry_are_journaled_once(vault: Vault) -> None:
    """Rows from before the journal existed (or written by a path that forgot it) are found and journaled
    by the next flush, once."""
    for i in range(4):
        vault.put(f"old/{i}.pdf", b"x" * (i + 1), {"document-type": "contract"})
    assert all(r.success for r in vault.sensor_and_runs())
    with psycopg.connect(vault.dsn) as conn:
        conn.execute("UPDATE vault_secure.replication_status SET journaled = false"
                     " WHERE s3_key IN ('old/1.pdf', 'old/3.pdf')")
    result = writer(vault).flush()
    assert result.repaired_rows == 2
    assert writer(vault).flush().repaired_rows == 0
    copies = copy_entries(vault)
    assert copies == Counter({"old/0.pdf": 1, "old/1.pdf": 2, "old/2.pdf": 1, "old/3.pdf": 2})
    repaired = [e for e in vault.journal_entries() if e.get("repaired")]
    assert sorted(e["key"] for e in repaired) == ["old/1.pdf", "old/3.pdf"]


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_database_behind_the_storage_refuses_to_write_the_journal(vault: Vault, pg_server) -> None:
    vault.put("ahead.pdf", b"a", {"document-type": "invoice"})
    assert all(r.success for r in vault.sensor_and_runs())
    # A second database that never saw this journal (restored from an old backup, say) must not fork it.
    other = vault.dsn.rsplit("/", 1)[0] + "/" + (name := f"behind_{vault.cold_bucket.replace('-', '_')}")
    pg_server.create_database(name)
    from vault_pipeline.replication.tracking import TrackingStore

    with TrackingStore(other) as store:
        store.migrate()
        with store.pool.connection() as conn, conn.transaction():
            outbox.enqueue(conn, copy_fields({
                "bucket_dest": vault.cold_bucket, "s3_key": "fork.pdf", "aws_version_id": "v",
                "sha256": "0" * 64, "ovh_size": 1, "document_type": "invoice", "aws_object_lock_until": None,
                "ovh_etag": "e", "bucket_source": vault.hot_bucket, "source_version_id": None,
                "source_last_modified": None, "source_document_type": None, "retention_years": 10,
                "retention_base": None, "storage_class": None, "cold_checksum": None, "cold_checksum_type": None,
                "part_size": None, "aws_etag": None, "previous_cold_version_ids": [], "replication_count": 1,
                "retry_count": 0, "replicated_at": None, "verified_at": None,
            }, run_id=None, adopted=False))
    with pytest.raises(JournalError, match="beyond this database's journal position"):
        JournalWriter(other, SegmentStore(vault.cold, vault.cold_bucket)).flush()
    assert [e["key"] for e in vault.journal_entries() if e["action"] == "copy"] == ["ahead.pdf"]
