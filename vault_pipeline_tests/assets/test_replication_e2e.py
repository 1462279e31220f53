"""The specification's scenario and the main behaviours, end to end: sensor -> run -> cold site -> manifest."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import time

import pytest
from botocore.exceptions import ClientError

from vault_pipeline.replication.policy import retain_until
from vault_pipeline_tests.conftest import Vault, sql, today_key

MiB = 1024 * 1024


def lock_of(vault: Vault, key: str, version_id: str) -> dict:
    return vault.cold.head_object(Bucket=vault.cold_bucket, Key=key, VersionId=version_id, ChecksumMode="ENABLED")


def test_specification_scenario_payslip(vault: Vault) -> None:
    body = b"%PDF-1.7\n" + os.urandom(4096)
    put = vault.put("test.pdf", body, {"document-type": "payslip"})
    hot_head = vault.hot.head_object(Bucket=vault.hot_bucket, Key="test.pdf")

    # One sensor evaluation requests exactly one run, for today's partition, and that run succeeds.
    sensor_result = vault.run_sensor()
    assert [r.partition_key for r in sensor_result.run_requests] == [today_key()]
    request = sensor_result.run_requests[0]
    run = vault.run_partition(request.partition_key, request.run_config, request.tags)
    assert run.success

    row = vault.row("test.pdf")
    # The specification's own check, as written.
    [spec_row] = sql(vault.dsn, "SELECT status, aws_version_id FROM vault_secure.replication_status"
                     " WHERE s3_key = 'test.pdf';")
    assert spec_row == ("replicated", row["aws_version_id"])
    assert row["status"] == "replicated"
    head = lock_of(vault, "test.pdf", row["aws_version_id"])
    expected_until = retain_until(hot_head["LastModified"].astimezone(dt.UTC).date(), 50)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == expected_until
    assert head["StorageClass"] == "DEEP_ARCHIVE"
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert head["Metadata"]["vault-sha256"] == hashlib.sha256(body).hexdigest()
    assert head["Metadata"]["document-type"] == "payslip"  # the source's own metadata is kept
    assert head["Metadata"]["vault-source-etag"] == put["ETag"].strip('"')
    assert head["TagCount"] == 2
    if vault.flavour == "seaweedfs":
        tags = vault.cold.get_object_tagging(Bucket=vault.cold_bucket, Key="test.pdf")["TagSet"]
        assert {t["Key"]: t["Value"] for t in tags} == {"DocumentType": "payslip", "RetentionYears": "50"}
    else:
        # moto refuses GetObjectTagging on DEEP_ARCHIVE (AWS answers it); HEAD's tag count is what it gives.
        with pytest.raises(ClientError, match="InvalidObjectState"):
            vault.cold.get_object_tagging(Bucket=vault.cold_bucket, Key="test.pdf")
        with pytest.raises(ClientError):
            vault.cold.get_object(Bucket=vault.cold_bucket, Key="test.pdf")  # Deep Archive: no read

    # Every column of the row is filled.
    assert row["sha256"] == hashlib.sha256(body).hexdigest()
    assert row["document_type"] == "payslip" and row["retention_years"] == 50
    assert row["aws_object_lock_until"] == expected_until
    assert row["storage_class"] == "DEEP_ARCHIVE"
    assert row["ovh_size"] == len(body)
    assert row["ovh_etag"] == put["ETag"].strip('"')
    for column in ("aws_version_id", "aws_etag", "cold_checksum", "replicated_at", "verified_at",
                   "bucket_dest", "partition_day"):
        assert row[column], column
    assert row["lease_owner"] is None and row["cold_upload_id"] is None and row["error_message"] is None
    events = sql(vault.dsn, "SELECT event_type, metadata->>'sha256' FROM vault_secure.audit_logs WHERE object_key=%s",
                 ("test.pdf",))
    assert events == [("REPLICATION_SUCCESS", row["sha256"])]

    # Materialization metadata tells the story.
    materialization = run.asset_materializations_for_node("cold_copies")[0]
    assert materialization.metadata["objects_copied"].value == 1
    assert materialization.metadata["bytes_copied"].value == len(body)

    # Nothing left to do: the next tick requests no run and the object has exactly one cold version.
    assert not vault.run_sensor().run_requests
    assert len(vault.cold_versions("test.pdf")) == 1


def test_multipart_object_is_streamed_with_composite_checksum(vault: Vault) -> None:
    body = os.urandom(12 * MiB + 123)  # threshold and part size are 5 MiB in tests: 3 parts
    vault.put("big/scan.pdf", body, {"document-type": "contract"})
    [run] = vault.sensor_and_runs()
    assert run.success
    row = vault.row("big/scan.pdf")
    assert row["status"] == "replicated" and row["sha256"] == hashlib.sha256(body).hexdigest()
    assert row["part_size"] == 5 * MiB and row["cold_checksum_type"] == "COMPOSITE"
    digests = [hashlib.sha256(body[i:i + 5 * MiB]).digest() for i in range(0, len(body), 5 * MiB)]
    composite = base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode()
    head = lock_of(vault, "big/scan.pdf", row["aws_version_id"])
    assert head["ChecksumSHA256"].split("-")[0] == composite
    assert head["ObjectLockMode"] == "COMPLIANCE" and row["retention_years"] == 10
    assert head["ContentLength"] == len(body)
    assert vault.open_uploads() == []


def test_changed_source_is_copied_again_as_a_new_locked_version(vault: Vault) -> None:
    vault.put("doc.pdf", b"first version", {"document-type": "invoice"})
    assert all(r.success for r in vault.sensor_and_runs())
    first = vault.row("doc.pdf")
    vault.put("doc.pdf", b"second version, longer", {"document-type": "invoice"})
    runs = vault.sensor_and_runs()
    assert runs and all(r.success for r in runs)
    second = vault.row("doc.pdf")
    assert second["status"] == "replicated"
    assert second["aws_version_id"] != first["aws_version_id"]
    assert second["previous_cold_version_ids"] == [first["aws_version_id"]]
    assert second["replication_count"] == 2
    assert second["sha256"] == hashlib.sha256(b"second version, longer").hexdigest()
    versions = {v["VersionId"] for v in vault.cold_versions("doc.pdf")}
    assert versions == {first["aws_version_id"], second["aws_version_id"]}
    old = lock_of(vault, "doc.pdf", first["aws_version_id"])  # the old version stays locked
    assert old["ObjectLockMode"] == "COMPLIANCE" and old["Metadata"]["vault-sha256"] == first["sha256"]


def test_backfill_of_a_day_range_is_one_run_and_reports_skipped_objects(vault: Vault) -> None:
    vault.put("range/a.pdf", b"a", {"document-type": "invoice"})
    vault.put("range/b.pdf", b"bb", {"document-type": "invoice"})
    today = dt.datetime.now(dt.UTC).date()
    week_ago = (today - dt.timedelta(days=7)).isoformat()
    range_tags = {"dagster/asset_partition_range_start": week_ago,
                  "dagster/asset_partition_range_end": today_key()}
    job = vault.defs.resolve_job_def("replication_job")
    vault.sweep()  # what the feeds and the hourly sweep do: the runs read the manifest
    run = job.execute_in_process(instance=vault.instance, tags=range_tags, raise_on_error=False)
    assert run.success  # what a UI backfill of the last eight days launches: a single run
    assert run.asset_materializations_for_node("cold_copies")[0].metadata["objects_copied"].value == 2
    vault.put("range/c.pdf", b"ccc", {"document-type": "invoice"})
    vault.sweep()
    again = job.execute_in_process(instance=vault.instance, tags=range_tags, raise_on_error=False)
    metadata = again.asset_materializations_for_node("cold_copies")[0].metadata
    assert (metadata["objects_copied"].value, metadata["objects_skipped"].value) == (1, 2)
    assert metadata["bytes_skipped"].value == 3
    # One materialization per partition of the range.
    assert len(again.asset_materializations_for_node("cold_copies")) == 8


def test_hot_inventory_reads_the_manifest_never_the_bucket(vault: Vault) -> None:
    for i in range(25):
        vault.put(f"manual/{i:03d}.pdf", f"document {i}".encode(), {"document-type": "general"})
    # Nothing registered yet (no feed, no sweep): the day's inventory is empty, whatever the bucket holds.
    first = vault.run_partition(today_key(), sweep=False)  # what a click on "Materialize" in the UI does
    assert first.success
    assert first.asset_materializations_for_node("hot_inventory")[0].metadata["objects"].value == 0
    report = vault.sweep()
    assert (report.new, report.finished) == (25, True)
    run = vault.run_partition(today_key(), sweep=False)
    assert run.success
    inventory = run.asset_materializations_for_node("hot_inventory")[0].metadata
    assert (inventory["objects"].value, inventory["pending"].value) == (25, 25)
    assert {r["status"] for r in vault.store.rows(vault.hot_bucket)} == {"replicated"}


def test_overlapping_runs_never_copy_the_same_object_twice(vault: Vault) -> None:
    for i in range(200):
        vault.put(f"overlap/{i:03d}.pdf", os.urandom(256 * 1024), {"document-type": "payslip"})
    vault.run_sensor()
    # Three run processes on the same day, as queued runs of one partition would be: a slow one first
    # (one object at a time, 50 ms more per object: >= 10 s for all), then two more that join while it
    # is still copying.
    workers = [vault.start_worker(REPLICATION_CONCURRENCY="1", VAULT_TEST_COPY_DELAY_S="0.05")]
    deadline = time.monotonic() + 60
    while not sql(vault.dsn, "SELECT 1 FROM vault_secure.replication_status WHERE status = 'replicated'"):
        assert time.monotonic() < deadline and workers[0].poll() is None, workers[0].communicate()[1][-3000:]
        time.sleep(0.05)
    workers += [vault.start_worker(REPLICATION_CONCURRENCY="4") for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
    assert {r["status"] for r in vault.store.rows(vault.hot_bucket)} == {"replicated"}
    successes = sql(vault.dsn, "SELECT object_key, count(*) FROM vault_secure.audit_logs"
                               " WHERE event_type = 'REPLICATION_SUCCESS' GROUP BY 1")
    assert len(successes) == 200 and {n for _, n in successes} == {1}  # each object copied by exactly one run
    runs_that_copied = sql(vault.dsn, "SELECT count(DISTINCT run_id) FROM vault_secure.audit_logs")[0][0]
    assert runs_that_copied >= 2  # the work really was shared
    versions = vault.cold_versions_under("overlap/")
    assert sorted(versions) == [f"overlap/{i:03d}.pdf" for i in range(200)]
    assert {len(v) for v in versions.values()} == {1}


def test_application_ids_come_from_hot_metadata_and_a_bad_one_never_stops_the_copy(vault: Vault) -> None:
    document_id = "3e0f6c52-1b1d-4f0e-9d59-6a8f3b1e2c4d"
    vault.put("ids/good.pdf", b"ids", {"document-type": "invoice", "document-id": document_id,
                                       "user-id": "not-a-uuid"})
    vault.put("ids/none.pdf", b"no ids", {"document-type": "invoice"})
    assert all(r.success for r in vault.sensor_and_runs())
    good, none = vault.row("ids/good.pdf"), vault.row("ids/none.pdf")
    assert good["status"] == none["status"] == "replicated"
    assert (str(good["document_id"]), good["user_id"]) == (document_id, None)
    assert (none["document_id"], none["user_id"]) == (None, None)
    # The spec's own query finds the row by its key, and the warning is in the audit log.
    [(notes,)] = sql(vault.dsn, "SELECT metadata->'notes' FROM vault_secure.audit_logs WHERE object_key = %s"
                     " AND event_type = 'REPLICATION_SUCCESS'", ("ids/good.pdf",))
    assert any("user-id 'not-a-uuid' is not a UUID" in note for note in notes)
    assert sql(vault.dsn, "SELECT count(*) FROM vault_secure.replication_status WHERE user_id IS NULL"
               " AND s3_key LIKE 'ids/%%'") == [(2,)]
