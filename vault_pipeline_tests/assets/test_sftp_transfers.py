"""The SFTP intake through Dagster, end to end on real servers: a file dropped in the inbox is registered by
sftp_inbox_sensor once stable, transferred by sftp_transfer_job, then copied by the ordinary replication path
to the locked cold site, where its SHA-256 is the one taken while it was read from SFTP."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

from dagster import AssetKey, SensorResult, SkipReason, build_sensor_context

from vault_pipeline.replication.verify import META_INTAKE_SHA256, META_SHA256
from vault_pipeline_tests.conftest import Vault, today_key
from vault_pipeline_tests.sftpservers import SftpEndpoint


def drop(inbox: Path, name: str, body: bytes) -> None:
    path = inbox / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).timestamp()
    os.utime(path, (old, old))


def tick(vault: Vault, cursor: str | None) -> SensorResult | SkipReason:
    sensor = vault.defs.resolve_sensor_def("sftp_inbox_sensor")
    return sensor(build_sensor_context(instance=vault.instance, cursor=cursor, resources=vault.resources))


def test_a_file_dropped_by_sftp_reaches_the_cold_site_locked_with_its_intake_hash(
        vault: Vault, sftp_server: SftpEndpoint) -> None:
    vault.configure(**sftp_server.env(), SFTP_STABLE_SECONDS="0", SFTP_DOCUMENT_TYPES="payroll=payslip")
    body = os.urandom(6 * 1024 * 1024)  # above the test multipart threshold (5 MiB): multipart on both sites
    drop(sftp_server.inbox_dir, "payroll/2026 11/jdoe é.pdf", body)

    first = tick(vault, None)
    assert isinstance(first, SensorResult) and not first.run_requests  # one look: not yet stable
    second = tick(vault, first.cursor)
    assert isinstance(second, SensorResult) and len(second.run_requests) == 1
    request = second.run_requests[0]
    assert request.partition_key == today_key()

    job = vault.defs.resolve_job_def("sftp_transfer_job")
    result = job.execute_in_process(partition_key=request.partition_key, instance=vault.instance,
                                    tags=request.tags, raise_on_error=False)
    assert result.success
    materialization = result.asset_materializations_for_node("sftp_transfers")[0]
    assert materialization.metadata["files"].value == 1
    assert materialization.metadata["mb"].value == 6.0
    assert materialization.metadata["download_s"].value > 0

    key = "sftp/payroll/2026 11/jdoe é.pdf"
    sha = hashlib.sha256(body).hexdigest()
    assert vault.hot.head_object(Bucket=vault.hot_bucket, Key=key)["Metadata"][META_INTAKE_SHA256] == sha
    assert (sftp_server.inbox_dir / "processed" / "payroll/2026 11/jdoe é.pdf").read_bytes() == body

    runs = vault.sensor_and_runs()  # hot_bucket_sensor: the row the transfer registered needs its day's run
    assert runs and all(r.success for r in runs)
    row = vault.row(key)
    assert row["status"] == "replicated" and row["sha256"] == sha and row["document_type"] == "payslip"
    cold = vault.cold.head_object(Bucket=vault.cold_bucket, Key=key)
    assert cold["Metadata"][META_SHA256] == sha
    assert cold["ObjectLockMode"] == "COMPLIANCE"

    with vault.store.pool.connection() as conn:
        status, hot_key, logged_sha, download, upload, total = conn.execute(
            "SELECT status, hot_key, sha256, download_duration, upload_duration, total_duration"
            " FROM vault_secure.file_transfer_log WHERE filename = %s", ("payroll/2026 11/jdoe é.pdf",)).fetchone()
    assert (status, hot_key, logged_sha) == ("COMPLETED", key, sha)
    assert download > 0 and upload > 0 and total >= download + upload

    # A later run compares the intake hash with the cold copy's: the end-to-end check passes for that file.
    again = job.execute_in_process(partition_key=today_key(), instance=vault.instance, raise_on_error=False)
    assert again.success, [e.message for e in again.all_events if e.is_failure]
    checks = {e.check_name: e for e in again.get_asset_check_evaluations()}
    assert checks["intake_sha256_matches_cold_copy"].passed
    assert checks["intake_sha256_matches_cold_copy"].metadata["files_compared"].value == 1
    assert checks["no_failed_sftp_files"].passed
    assert AssetKey("sftp_transfers") in vault.defs.resolve_asset_graph().get(AssetKey("hot_inventory")).parent_keys


def test_a_hot_object_altered_after_its_intake_is_never_copied(vault: Vault) -> None:
    body = b"%PDF-1.7 delivered"
    vault.put("sftp/altered.pdf", body + b" but altered",
              metadata={META_INTAKE_SHA256: hashlib.sha256(body).hexdigest()})
    runs = vault.sensor_and_runs()
    assert runs and not runs[0].success
    row = vault.row("sftp/altered.pdf")
    assert row["status"] == "failed" and "altered on the hot site after delivery" in row["error_message"]
    assert vault.cold_versions("sftp/altered.pdf") == []


def test_without_sftp_settings_the_sensor_is_stopped_and_says_what_to_set(vault: Vault) -> None:
    sensor = vault.defs.resolve_sensor_def("sftp_inbox_sensor")
    assert sensor.default_status.value == "STOPPED"
    result = tick(vault, None)
    assert isinstance(result, SkipReason) and "SFTP_HOST" in (result.skip_message or "")
