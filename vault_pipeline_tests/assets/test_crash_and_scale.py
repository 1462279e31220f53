"""A replication process killed at any instant, and objects larger than memory should allow."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from vault_pipeline_tests.conftest import Vault, sql, today_key

MiB = 1024 * 1024


def parts_sent(vault: Vault, upload: dict) -> int:
    """Parts of an open upload; an upload completed since it was listed counts as fully sent."""
    try:
        response = vault.cold.list_parts(Bucket=vault.cold_bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    except vault.cold.exceptions.NoSuchUpload:
        return 1 << 30
    return len(response.get("Parts", []))


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_replicates_everything_exactly_once(vault: Vault) -> None:
    small = [f"crash/small-{i:04d}.pdf" for i in range(200)]
    large = [f"crash/a-large-{i}.bin" for i in range(6)]  # sorted first: claimed first
    for key in small:
        vault.put(key, os.urandom(16 * 1024), {"document-type": "payslip"})
    for key in large:
        vault.put(key, os.urandom(11 * MiB), {"document-type": "contract"})
    vault.run_sensor()

    worker = vault.start_worker(REPLICATION_CONCURRENCY="4", VAULT_PART_CONCURRENCY="1")
    deadline = time.monotonic() + 120
    killed = False
    while time.monotonic() < deadline and worker.poll() is None:
        os.kill(worker.pid, signal.SIGSTOP)  # freeze every thread, then look at the servers
        replicated = sql(vault.dsn, "SELECT count(*) FROM vault_secure.replication_status"
                                    " WHERE status = 'replicated'")[0][0]
        # An upload with a part still to send cannot be completing on the server while we look (its
        # CompleteMultipartUpload is only sent after the last part), so it is still open after the kill.
        if replicated and any(parts_sent(vault, u) < 2 for u in vault.open_uploads()):
            os.kill(worker.pid, signal.SIGKILL)  # mid-run, with a multipart upload open on the cold site
            killed = True
            break
        os.kill(worker.pid, signal.SIGCONT)
        time.sleep(0.02)
    assert killed, "the worker finished before it could be killed: " + worker.communicate()[1][-2000:]
    worker.wait()
    statuses = dict(sql(vault.dsn, "SELECT status, count(*) FROM vault_secure.replication_status GROUP BY 1"))
    assert statuses.get("in_progress", 0) > 0  # the dead worker's rows are held by its lease
    assert vault.open_uploads()  # it left a multipart upload open

    time.sleep(5.5)  # VAULT_LEASE_SECONDS=5 in tests: the dead worker's leases expire
    rerun = vault.run_partition(today_key(), sweep=False)
    assert rerun.success
    rows = vault.store.rows(vault.hot_bucket)
    assert len(rows) == 206 and {r["status"] for r in rows} == {"replicated"}
    versions = vault.cold_versions_under("crash/")
    for row in rows:
        assert [v["VersionId"] for v in versions[row["s3_key"]]] == [row["aws_version_id"]], row["s3_key"]
    assert vault.open_uploads() == []
    metadata = rerun.asset_materializations_for_node("cold_copies")[0].metadata
    assert metadata["stale_uploads_aborted"].value >= 1


@pytest.mark.slow
@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_memory_stays_bounded_for_a_1_gib_object(vault: Vault) -> None:
    size = 1024 * MiB
    chunk = os.urandom(MiB)
    # Upload through a multipart upload so the test itself never holds the object in memory.
    upload = vault.hot.create_multipart_upload(Bucket=vault.hot_bucket, Key="huge.bin",
                                               Metadata={"document-type": "contract"})
    parts = []
    part = chunk * 64
    for number in range(1, size // len(part) + 1):
        response = vault.hot.upload_part(Bucket=vault.hot_bucket, Key="huge.bin", UploadId=upload["UploadId"],
                                         PartNumber=number, Body=part)
        parts.append({"PartNumber": number, "ETag": response["ETag"]})
    vault.hot.complete_multipart_upload(Bucket=vault.hot_bucket, Key="huge.bin", UploadId=upload["UploadId"],
                                        MultipartUpload={"Parts": parts})
    vault.run_sensor()
    worker = vault.start_worker(VAULT_MULTIPART_THRESHOLD_MB="16", VAULT_PART_SIZE_MB="8", VAULT_PART_CONCURRENCY="4")
    out, err = worker.communicate(timeout=600)
    assert worker.returncode == 0, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    growth = report["rss_after_mib"] - report["rss_before_mib"]
    print(f"1 GiB copy: RSS {report['rss_before_mib']:.0f} MiB before, peak {report['rss_after_mib']:.0f} MiB "
          f"during the run (+{growth:.0f} MiB)")
    assert growth < 160, f"peak RSS grew by {growth:.0f} MiB while copying a 1 GiB object"
    row = vault.row("huge.bin")
    assert row["status"] == "replicated" and row["ovh_size"] == size
    head = vault.cold.head_object(Bucket=vault.cold_bucket, Key="huge.bin", VersionId=row["aws_version_id"])
    assert head["ContentLength"] == size and head["ObjectLockMode"] == "COMPLIANCE"
