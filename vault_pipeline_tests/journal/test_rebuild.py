"""Rebuilding the tracking database from the cold site alone (journal replay + bucket sweep), against
the real servers: row-for-row equality with the database that was lost, incremental catch-up, tamper
detection, and objects the journal does not know."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from vault_pipeline.journal.entries import BUSINESS_COLUMNS
from vault_pipeline.journal.rebuild import RebuildError, rebuild_tracking_db
from vault_pipeline.journal.seal import Sealer
from vault_pipeline.journal.segments import SegmentStore
from vault_pipeline.journal.signing import SealSigner
from vault_pipeline.journal.writer import JournalWriter
from vault_pipeline_tests.conftest import Vault, today_key

TYPES = ["payslip", "invoice", "contract", "Payslip", "unknown-kind", None]


def rows_by_key(dsn: str, where: str = "status = 'replicated'") -> dict[str, dict[str, Any]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.cursor(row_factory=dict_row).execute(
            f"SELECT {', '.join(BUSINESS_COLUMNS)} FROM vault_secure.replication_status WHERE {where}").fetchall()
    return {r["s3_key"]: r for r in rows}


def rebuild(vault: Vault, target: str, **kwargs: Any):
    return rebuild_tracking_db(target, SegmentStore(vault.cold, vault.cold_bucket), source_bucket=vault.hot_bucket,
                               reserved_prefixes=("reports/verification/",), **kwargs)


def put_many(vault: Vault, prefix: str, n: int) -> list[str]:
    keys = []
    for i in range(n):
        kind = TYPES[i % len(TYPES)]
        key = f"{prefix}/doc {i:03d} é+%.pdf"
        vault.put(key, os.urandom(200 + i), {"document-type": kind} if kind else {})
        keys.append(key)
    return keys


def assert_same_rows(expected: dict[str, dict[str, Any]], rebuilt: dict[str, dict[str, Any]]) -> None:
    assert sorted(rebuilt) == sorted(expected)
    for key, row in expected.items():
        for column in BUSINESS_COLUMNS:
            assert rebuilt[key][column] == row[column], f"{key!r}: {column} {rebuilt[key][column]!r} != {row[column]!r}"


def test_a_lost_database_is_rebuilt_row_for_row_from_the_journal(vault: Vault, secondary_dsn: str) -> None:
    # Objects that fail three times, then succeed on a later run (retry_count kept).
    flaky = put_many(vault, "flaky", 3)
    vault.run_sensor()
    good = vault.env["OVH_S3_ENDPOINT"]
    vault.configure(OVH_S3_ENDPOINT="http://127.0.0.1:9")
    assert not vault.run_partition(today_key(), sweep=False).success
    vault.configure(OVH_S3_ENDPOINT=good)
    # A few hundred more (the flaky ones are retried and copied now).
    keys = put_many(vault, "batch", 240)
    assert all(r.success for r in vault.sensor_and_runs())
    # A source that changes after its copy is re-replicated as a new locked version.
    changed = keys[7]
    vault.put(changed, b"second edition", {"document-type": "contract"})
    assert all(r.success for r in vault.sensor_and_runs())
    # The hot copies are deleted once verified (journaled as hot_delete).
    vault.configure(DELETE_FROM_OVH_AFTER_REPLICATION="true")
    assert vault.run_partition(today_key(), sweep=False).success
    # One object vanishes from the hot site before it is copied: failed for good.
    vault.put("vanishes.pdf", b"soon gone", {"document-type": "invoice"})
    vault.run_sensor()
    vault.hot.delete_object(Bucket=vault.hot_bucket, Key="vanishes.pdf")
    assert not vault.run_partition(today_key(), sweep=False).success

    primary = rows_by_key(vault.dsn)
    assert len(primary) == 243
    assert all(primary[k]["retry_count"] == 3 for k in flaky)
    assert primary[changed]["replication_count"] == 2 and len(primary[changed]["previous_cold_version_ids"]) == 1
    assert all(r["hot_deleted_at"] is not None for r in primary.values())
    failed = rows_by_key(vault.dsn, "status = 'failed'")
    assert list(failed) == ["vanishes.pdf"]

    # The primary database is lost.
    with psycopg.connect(vault.dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA vault_secure CASCADE")

    report = rebuild(vault, secondary_dsn, mode="full")
    assert report.entries["copy"] == 244  # 243 objects, the changed one twice
    assert report.entries["hot_delete"] == 243
    assert report.rebuilt_from_head == [] and report.unrebuildable == []
    assert report.rows_per_s > 0 and report.next_seq == report.entries_applied + 1
    rebuilt = rows_by_key(secondary_dsn)
    assert_same_rows(primary, rebuilt)
    # A failure is not a cold write: the storage cannot know it. The hot sensor finds such objects again.
    assert rows_by_key(secondary_dsn, "status <> 'replicated'") == {}

    # Replaying again changes nothing (idempotent), and the target continues the same journal.
    again = rebuild(vault, secondary_dsn, mode="full")
    assert again.entries_applied == report.entries_applied
    assert_same_rows(primary, rows_by_key(secondary_dsn))
    promoted = JournalWriter(secondary_dsn, SegmentStore(vault.cold, vault.cold_bucket)).flush()
    assert (promoted.entries, promoted.repaired_rows, promoted.next_seq) == (0, 0, report.next_seq)


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_incremental_rebuild_applies_only_what_was_journaled_since(vault: Vault, secondary_dsn: str) -> None:
    put_many(vault, "first", 30)
    assert all(r.success for r in vault.sensor_and_runs())
    full = rebuild(vault, secondary_dsn, mode="full")
    assert full.entries["copy"] == 30

    later = put_many(vault, "second", 12)
    vault.put("first/doc 003 é+%.pdf", b"changed", {"document-type": "invoice"})
    assert all(r.success for r in vault.sensor_and_runs())
    incremental = rebuild(vault, secondary_dsn, mode="incremental")
    assert incremental.start_seq == full.next_seq
    assert incremental.entries["copy"] == 13 and not incremental.swept
    assert_same_rows(rows_by_key(vault.dsn), rows_by_key(secondary_dsn))
    assert set(later) <= set(rows_by_key(secondary_dsn))

    nothing = rebuild(vault, secondary_dsn, mode="incremental")
    assert (nothing.entries_applied, nothing.start_seq) == (0, incremental.next_seq)

    # A promoted secondary can seal the journal it replayed (its index of entries came with the replay).
    today = dt.datetime.now(dt.UTC).date()
    sealed = Sealer(secondary_dsn, SegmentStore(vault.cold, vault.cold_bucket), SealSigner.generate()).seal_through(
        today, now=dt.datetime.combine(today + dt.timedelta(days=1), dt.time(1), tzinfo=dt.UTC))
    assert sealed.target is not None and sealed.target.seal["tree_size"] == incremental.next_seq - 1


def test_a_rewritten_segment_stops_the_rebuild_at_that_segment(vault: Vault, secondary_dsn: str) -> None:
    put_many(vault, "a", 5)
    assert all(r.success for r in vault.sensor_and_runs())
    put_many(vault, "b", 5)
    assert all(r.success for r in vault.sensor_and_runs())
    store = SegmentStore(vault.cold, vault.cold_bucket)
    _, second = list(store.list_segments())[:2]
    body = store.read_object(second.key)[0].replace(b'"size":2', b'"size":9')
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    vault.cold.put_object(Bucket=vault.cold_bucket, Key=second.key, Body=body, ChecksumAlgorithm="SHA256",
                          ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)

    with pytest.raises(RebuildError, match=second.key) as caught:
        rebuild(vault, secondary_dsn, mode="full")
    assert "versions" in str(caught.value)
    assert caught.value.report.next_seq == second.first_seq  # everything before it is applied
    with psycopg.connect(secondary_dsn) as conn:
        assert conn.execute("SELECT next_seq FROM vault_secure.rebuild_state").fetchone() == (second.first_seq,)
        assert conn.execute("SELECT count(*) FROM vault_secure.replication_status").fetchone() == (5,)


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_the_sweep_rebuilds_unjournaled_copies_from_their_own_metadata(vault: Vault, secondary_dsn: str) -> None:
    vault.put("journaled.pdf", b"in the journal", {"document-type": "invoice"})
    assert all(r.success for r in vault.sensor_and_runs())
    # A copy whose journal entry never made it (written by hand here, with the metadata every copy carries).
    body = b"copied, never journaled"
    sha = hashlib.sha256(body)
    until = dt.datetime(2036, 11, 25, tzinfo=dt.UTC)
    vault.cold.put_object(
        Bucket=vault.cold_bucket, Key="unjournaled.pdf", Body=body, ChecksumAlgorithm="SHA256",
        ChecksumSHA256=base64.b64encode(sha.digest()).decode(), ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until, StorageClass="DEEP_ARCHIVE",
        Metadata={"vault-sha256": sha.hexdigest(), "vault-source-etag": '"abc"', "document-type": "Invoice",
                  "vault-source-last-modified": "2026-11-24T08:00:00+00:00", "vault-document-type": "invoice",
                  "vault-retention-years": "10", "vault-retain-until": until.isoformat()})
    vault.cold.put_object(Bucket=vault.cold_bucket, Key="foreign.bin", Body=b"not ours", ChecksumAlgorithm="SHA256",
                          ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)

    report = rebuild(vault, secondary_dsn, mode="full")
    assert report.rebuilt_from_head == ["unjournaled.pdf"]
    assert [k for k, _ in report.unrebuildable] == ["foreign.bin"]
    assert "no vault metadata" in report.unrebuildable[0][1]
    row = rows_by_key(secondary_dsn)["unjournaled.pdf"]
    assert (row["sha256"], row["document_type"], row["source_document_type"]) == (sha.hexdigest(), "invoice",
                                                                                  "Invoice")
    assert row["aws_object_lock_until"] == until and row["partition_day"] == dt.date(2026, 11, 24)
    assert row["ovh_size"] == len(body) and row["bucket_source"] == vault.hot_bucket
    # Promoted, the secondary journals it on its first flush (the storage then knows it), once.
    promoted = JournalWriter(secondary_dsn, SegmentStore(vault.cold, vault.cold_bucket))
    assert promoted.flush().repaired_rows == 1
    assert promoted.flush().repaired_rows == 0
    assert [e["key"] for e in vault.journal_entries() if e["action"] == "copy"] == ["journaled.pdf",
                                                                                   "unjournaled.pdf"]
