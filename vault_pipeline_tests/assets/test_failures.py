"""Failures are recorded per object with a clear message, never stop the other objects, fail the run
visibly, and a rerun recovers them."""

from __future__ import annotations

import os

from vault_pipeline_tests.conftest import Vault, sql, today_key


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

    run = vault.run_partition(today_key(), sweep=False)
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
    rerun = vault.run_partition(today_key(), sweep=False)
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

    run = vault.run_partition(today_key(), sweep=False)
    assert not run.success
    assert vault.row("stays.pdf")["status"] == "replicated"
    gone = vault.row("vanishes.pdf")
    assert gone["status"] == "failed"
    assert "NoSuchKey" in gone["error_message"] or "404" in gone["error_message"]
    assert "is gone" in gone["error_message"] and gone["hot_missing_at"] is not None
    assert gone["retry_count"] == 1  # a missing key is not retried: another attempt cannot succeed

    vault.put("vanishes.pdf", b"back again", {"document-type": "payslip"})
    runs = vault.sensor_and_runs()  # the sensor sees the new ETag and requests the day again
    assert runs and all(r.success for r in runs)
    assert vault.row("vanishes.pdf")["status"] == "replicated"


def test_a_cold_bucket_that_cannot_hold_locked_copies_fails_the_run_clearly(vault: Vault) -> None:
    vault.put("waits.pdf", b"x" * 100, {"document-type": "payslip"})
    vault.run_sensor()
    vault.configure(AWS_S3_BUCKET_DOCUMENTS_COLD="no-such-cold-bucket-here")
    run = vault.run_partition(today_key(), sweep=False)
    assert not run.success
    assert "cold bucket 'no-such-cold-bucket-here' cannot be used" in failure_description(run)
    unlocked = "plain-" + vault.cold_bucket
    vault.cold.create_bucket(Bucket=unlocked)  # exists, but without versioning and Object Lock
    vault.configure(AWS_S3_BUCKET_DOCUMENTS_COLD=unlocked)
    run = vault.run_partition(today_key(), sweep=False)
    assert not run.success
    assert "must be versioned with Object Lock enabled" in failure_description(run)
    assert vault.row("waits.pdf")["status"] == "pending"  # nothing lost: the next good run copies it


def test_an_object_deleted_between_listing_and_copy_is_failed_once_until_listed_again(vault: Vault) -> None:
    """Issue 12 §8a: a clear terminal state, not retried by every run of its day, back when it reappears
    (even with the same bytes, so the same ETag). Small and large objects."""
    small, large = b"small, deleted before its copy", os.urandom(6 * 1024 * 1024)
    vault.put("gone/small.pdf", small, {"document-type": "invoice"})
    vault.put("gone/large.bin", large, {"document-type": "invoice"})
    vault.put("gone/stays.pdf", b"fine", {"document-type": "invoice"})
    vault.run_sensor()
    for key in ("gone/small.pdf", "gone/large.bin"):
        vault.hot.delete_object(Bucket=vault.hot_bucket, Key=key)

    run = vault.run_partition(today_key(), sweep=False)
    assert not run.success and "2 object(s) still failed" in failure_description(run)
    for key in ("gone/small.pdf", "gone/large.bin"):
        row = vault.row(key)
        assert row["status"] == "failed" and row["hot_missing_at"] is not None and row["retry_count"] == 1
        assert "is gone (deleted from the hot site after it was listed)" in row["error_message"]

    vault.put("gone/other.pdf", b"new work for the same day", {"document-type": "invoice"})
    vault.run_sensor()
    again = vault.run_partition(today_key(), sweep=False)
    # The copy step succeeds: the gone rows are not claimed again. (The day's completeness check stays red:
    # two documents of the day were never archived.)
    assert again.asset_materializations_for_node("cold_copies")
    assert vault.row("gone/other.pdf")["status"] == "replicated"
    assert [vault.row(k)["retry_count"] for k in ("gone/small.pdf", "gone/large.bin")] == [1, 1]
    assert sql(vault.dsn, "SELECT count(*) FROM vault_secure.audit_logs WHERE event_type = 'REPLICATION_FAILURE'"
                          " AND metadata->>'hot_object_gone' = 'true'") == [(2,)]

    vault.put("gone/small.pdf", small, {"document-type": "invoice"})  # the same bytes: the same ETag
    vault.put("gone/large.bin", large, {"document-type": "invoice"})
    runs = vault.sensor_and_runs()
    assert runs and all(r.success for r in runs)
    for key in ("gone/small.pdf", "gone/large.bin"):
        row = vault.row(key)
        assert row["status"] == "replicated" and row["hot_missing_at"] is None
        assert len(vault.cold_versions(key)) == 1
