"""Failures are recorded per object with a clear message, never stop the other objects, fail the run
visibly, and a rerun recovers them."""

from __future__ import annotations

import os

from vault_pipeline_tests.conftest import Vault, sql, today_key

NO_RESCAN = {"ops": {"hot_inventory": {"config": {"rescan_hot_bucket": False}}}}


def failure_description(run) -> str:
    failures = [e for e in run.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures, "the run should have a failed step"
    return str(failures[0].event_specific_data.error)


def test_unreachable_hot_site_fails_rows_with_retries_and_a_rerun_recovers(vault: Vault) -> None:
    for i in range(5):
        vault.put(f"down/{i}.pdf", os.urandom(1000), {"document-type": "invoice"})
    vault.run_sensor()  # registered while the hot site answers
    good_endpoint = vault.env["OVH_S3_ENDPOINT"]
    vault.configure(OVH_S3_ENDPOINT="http://127.0.0.1:9")  # nothing listens on the discard port

    run = vault.run_partition(today_key(), NO_RESCAN)
    assert not run.success
    assert "5 object(s) still failed after their retries" in failure_description(run)
    for i in range(5):
        row = vault.row(f"down/{i}.pdf")
        assert row["status"] == "failed"
        assert row["retry_count"] == 3  # VAULT_MAX_ATTEMPTS attempts, each recorded
        assert "GET hot object" in row["error_message"] and "Could not connect" in row["error_message"]
    failures = sql(vault.dsn, "SELECT count(*) FROM vault_secure.audit_logs WHERE event_type='REPLICATION_FAILURE'")
    assert failures == [(5,)]

    vault.configure(OVH_S3_ENDPOINT=good_endpoint)
    rerun = vault.run_partition(today_key(), NO_RESCAN)
    assert rerun.success
    for i in range(5):
        row = vault.row(f"down/{i}.pdf")
        assert row["status"] == "replicated" and row["error_message"] is None
        assert row["retry_count"] == 3  # history kept
        assert len(vault.cold_versions(f"down/{i}.pdf")) == 1


def test_missing_source_fails_only_that_object(vault: Vault) -> None:
    vault.put("stays.pdf", b"fine", {"document-type": "payslip"})
    vault.put("vanishes.pdf", b"gone soon", {"document-type": "payslip"})
    vault.run_sensor()
    vault.hot.delete_object(Bucket=vault.hot_bucket, Key="vanishes.pdf")

    run = vault.run_partition(today_key(), NO_RESCAN)
    assert not run.success
    assert vault.row("stays.pdf")["status"] == "replicated"
    gone = vault.row("vanishes.pdf")
    assert gone["status"] == "failed"
    assert "NoSuchKey" in gone["error_message"] or "404" in gone["error_message"]
    assert gone["retry_count"] == 1  # a missing key is not retried: another attempt cannot succeed

    vault.put("vanishes.pdf", b"back again", {"document-type": "payslip"})
    runs = vault.sensor_and_runs()  # the sensor sees the new ETag and requests the day again
    assert runs and all(r.success for r in runs)
    assert vault.row("vanishes.pdf")["status"] == "replicated"


def test_a_cold_bucket_that_cannot_hold_locked_copies_fails_the_run_clearly(vault: Vault) -> None:
    vault.put("waits.pdf", b"x" * 100, {"document-type": "payslip"})
    vault.run_sensor()
    vault.configure(AWS_S3_BUCKET_DOCUMENTS_COLD="no-such-cold-bucket-here")
    run = vault.run_partition(today_key(), NO_RESCAN)
    assert not run.success
    assert "cold bucket 'no-such-cold-bucket-here' cannot be used" in failure_description(run)
    unlocked = "plain-" + vault.cold_bucket
    vault.cold.create_bucket(Bucket=unlocked)  # exists, but without versioning and Object Lock
    vault.configure(AWS_S3_BUCKET_DOCUMENTS_COLD=unlocked)
    run = vault.run_partition(today_key(), NO_RESCAN)
    assert not run.success
    assert "must be versioned with Object Lock enabled" in failure_description(run)
    assert vault.row("waits.pdf")["status"] == "pending"  # nothing lost: the next good run copies it
