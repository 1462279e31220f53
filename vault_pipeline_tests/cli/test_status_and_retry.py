"""`vault-pipeline status` and `vault-pipeline retry-failed` against a real `vault-pipeline dev` (PostgreSQL,
both SeaweedFS sites, `dagster dev` with its daemon), run as an operator runs them: the installed CLI in a
subprocess, configured by the stack's environment only.

The sensor's interval is set to a day, so it ticks once at start-up and then leaves the bucket alone: the
test decides when documents are registered and copied. Failed rows are real failures: a replication run
(the real job, in this process) whose hot endpoint does not answer.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dagster import DagsterInstance

from vault_pipeline.dagster_api import DagsterApi
from vault_pipeline.devstack.devserver import DevServer
from vault_pipeline.devstack.site import s3_client
from vault_pipeline.intake.sweep import run_sweep
from vault_pipeline.partitions import partition_key_for
from vault_pipeline.replication.tracking import TrackingStore
from vault_pipeline_tests.stackfixtures import stack_processes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[2]


def today() -> dt.date:  # read at each use: the module's tests may cross midnight
    return dt.datetime.now(dt.UTC).date()


def day() -> str:
    return partition_key_for(today())


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    root = tmp_path_factory.mktemp("dev")
    server = DevServer(root / "stack", root / "dev.log", extra_env={
        "VAULT_SENSOR_INTERVAL_SECONDS": "86400", "VAULT_ALERT_SENSOR_INTERVAL_SECONDS": "5",
        "VAULT_RETRY_BASE_SECONDS": "0.05", "VAULT_MAX_ATTEMPTS": "2",
    }).start()
    try:
        server.wait_for_sensor(DagsterApi(server.ui_url), "hot_bucket_sensor")
        yield server
    finally:
        server.stop()
    assert not stack_processes(str(root / "stack")), "a process of the dev stack outlived it"


def cli(dev: DevServer, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **dev.env, **env}
    return subprocess.run([sys.executable, "-m", "vault_pipeline.cli", *args], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=600)


def hot(dev: DevServer) -> Any:
    return s3_client(dev.env["OVH_S3_ENDPOINT"], dev.env["OVH_S3_ACCESS_KEY_ID"], dev.env["OVH_S3_SECRET_ACCESS_KEY"])


def cold(dev: DevServer) -> Any:
    return s3_client(dev.env["AWS_S3_ENDPOINT"], dev.env["AWS_S3_ACCESS_KEY_ID"], dev.env["AWS_S3_SECRET_ACCESS_KEY"])


def rows(dev: DevServer, prefix: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(dev.env["VAULT_DATABASE_URL"]) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        found = cur.execute("SELECT * FROM vault_secure.replication_status WHERE s3_key LIKE %s",
                            (prefix + "%",)).fetchall()
    return {r["s3_key"]: r for r in found}


def register(dev: DevServer) -> None:
    """What the reconciliation sweep does (its schedule and the sensor are slowed down here)."""
    with TrackingStore(dev.env["VAULT_DATABASE_URL"]) as store:
        run_sweep(hot(dev), dev.env["OVH_S3_BUCKET_DOCUMENTS"], store,
                  destination_bucket=dev.env["AWS_S3_BUCKET_DOCUMENTS_COLD"], listers=1)


def run_with_hot_site_down(dev: DevServer, monkeypatch: pytest.MonkeyPatch) -> bool:
    """The real replication job for today, in this process, with a hot endpoint nobody listens on."""
    from vault_pipeline.definitions import build_definitions
    from vault_pipeline.settings import load_settings

    with monkeypatch.context() as patch:
        for name, value in {**dev.env, "OVH_S3_ENDPOINT": "http://127.0.0.1:9", "VAULT_MAX_ATTEMPTS": "1"}.items():
            patch.setenv(name, value)
        job = build_definitions(load_settings()[0]).resolve_job_def("replication_job")
        result = job.execute_in_process(partition_key=day(),
                                        instance=DagsterInstance.ephemeral(), raise_on_error=False)
    return result.success


def wait_for_run(api: DagsterApi, run_id: str, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api.run(run_id)["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(1)
    raise AssertionError(f"run {run_id} not finished after {timeout} s")


def test_status_of_a_quiet_stack_is_all_clear(dev: DevServer) -> None:
    done = cli(dev, "status")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hot_bucket_sensor RUNNING every 86400 s" in done.stdout
    assert done.stdout.rstrip().endswith("all clear")

    as_json = cli(dev, "status", "--json")
    report = json.loads(as_json.stdout)
    assert report["dagster"]["sensor"]["status"] == "RUNNING"
    assert report["dagster"]["sensor"]["last_tick"]["status"] in ("SKIPPED", "SUCCESS")
    assert report["attention"] == [] and report["failed_checks"] == []
    assert report["source_bucket"] == dev.env["OVH_S3_BUCKET_DOCUMENTS"]


def test_nothing_to_retry(dev: DevServer) -> None:
    done = cli(dev, "retry-failed", "--day", "2001-01-01")
    assert done.returncode == 0, done.stderr
    assert "no failed rows on 2001-01-01" in done.stdout


def test_failed_rows_are_shown_then_retried_through_a_dagster_run(dev: DevServer,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    client, bucket = hot(dev), dev.env["OVH_S3_BUCKET_DOCUMENTS"]
    documents = {"retry/invoice 1.pdf": "invoice", "retry/invoice-%2+.pdf": "invoice",
                 "retry/bulletin de paie é.pdf": "payslip", "retry/gone.pdf": "contract"}
    for key, doc_type in documents.items():
        client.put_object(Bucket=bucket, Key=key, Body=os.urandom(2000), Metadata={"document-type": doc_type})
    register(dev)
    assert not run_with_hot_site_down(dev, monkeypatch)
    assert {r["status"] for r in rows(dev, "retry/").values()} == {"failed"}
    client.delete_object(Bucket=bucket, Key="retry/gone.pdf")  # this one cannot be recovered by a retry

    status = cli(dev, "status", "--json")
    assert status.returncode == 1, status.stderr
    report = json.loads(status.stdout)
    assert report["failed_rows"]["objects"] == 4
    assert report["failed_rows"]["days"] == {today().isoformat(): 4}
    assert report["by_document_type"]["unclassified"]["failed"] == 4  # never copied: no policy applied yet
    assert "Could not connect" in report["failed_rows"]["latest"][0]["error"]
    assert any("4 failed object(s)" in line and "retry-failed" in line for line in report["attention"])
    text = cli(dev, "status").stdout
    assert "failed rows   4 on 1 day(s)" in text and "needs attention:" in text

    dry = cli(dev, "retry-failed", "--dry-run")
    assert dry.returncode == 0 and f"4 failed row(s) on 1 day(s): {today()} (4)" in dry.stdout

    retried = cli(dev, "retry-failed", "--day", today().isoformat())
    assert retried.returncode == 1, retried.stdout + retried.stderr  # gone.pdf is still failed
    assert f"{today()}: run FAILURE; 3 row(s) copied and verified, 1 still failed" in retried.stdout
    assert "'retry/gone.pdf'" in retried.stdout
    final = rows(dev, "retry/")
    assert {k: r["status"] for k, r in final.items()} == {
        "retry/invoice 1.pdf": "replicated", "retry/invoice-%2+.pdf": "replicated",
        "retry/bulletin de paie é.pdf": "replicated", "retry/gone.pdf": "failed"}
    assert final["retry/bulletin de paie é.pdf"]["document_type"] == "payslip"
    again = cli(dev, "retry-failed", "--dry-run")  # the gone document waits for a listing, not a retry
    assert "1 failed row(s) left out: their hot object is gone" in again.stdout
    assert "no failed rows" in again.stdout
    assert "1 of them deleted from the hot site before their copy" in cli(dev, "status").stdout
    runs = [r for r in DagsterApi(dev.ui_url).runs("replication_job")
            if r["tags"].get("vault/trigger") == "retry-failed"]
    assert len(runs) == 1 and runs[0]["tags"]["dagster/partition"] == day()
    assert runs[0]["tags"]["vault/failed_rows"] == "4"


def test_a_day_with_many_failed_rows_is_retried_in_shards(dev: DevServer, monkeypatch: pytest.MonkeyPatch) -> None:
    client, bucket = hot(dev), dev.env["OVH_S3_BUCKET_DOCUMENTS"]
    for i in range(5):
        client.put_object(Bucket=bucket, Key=f"shards/{i}.pdf", Body=os.urandom(1500),
                          Metadata={"document-type": "invoice"})
    register(dev)
    assert not run_with_hot_site_down(dev, monkeypatch)
    assert {r["status"] for r in rows(dev, "shards/").values()} == {"failed"}

    # 5 failed rows, a shard per 2 rows, at most 2 shards: two runs share the day.
    retried = cli(dev, "retry-failed", "--day", today().isoformat(), VAULT_SHARD_MIN_OBJECTS="2",
                  VAULT_MAX_SHARDS="2")
    assert retried.returncode in (0, 1), retried.stdout + retried.stderr  # 1: a row of an earlier test is gone
    assert f"{today()} shard 0/2: run " in retried.stdout and f"{today()} shard 1/2: run " in retried.stdout
    assert f"{today()}: 2 shard runs: " in retried.stdout
    assert "5 row(s) copied and verified, 0 still failed" in retried.stdout
    assert {r["status"] for r in rows(dev, "shards/").values()} == {"replicated"}
    runs = [r for r in DagsterApi(dev.ui_url).runs("replication_job")
            if r["tags"].get("vault/trigger") == "retry-failed" and "vault/shard" in r["tags"]]
    assert sorted(r["tags"]["vault/shard"] for r in runs) == ["0/2", "1/2"]
    assert {(r["tags"]["dagster/partition"], r["tags"]["vault/failed_rows"]) for r in runs} == {(day(), "5")}


def test_a_failed_check_is_shown_with_its_key(dev: DevServer) -> None:
    client, bucket = hot(dev), dev.env["OVH_S3_BUCKET_DOCUMENTS"]
    client.put_object(Bucket=bucket, Key="checked/fine.pdf", Body=b"fine", Metadata={"document-type": "invoice"})
    register(dev)
    api = DagsterApi(dev.ui_url)
    assert wait_for_run(api, api.launch_run("replication_job", partition=day())) in (
        "SUCCESS", "FAILURE")  # FAILURE when the previous test's unrecoverable row is still there
    assert rows(dev, "checked/")["checked/fine.pdf"]["status"] == "replicated"
    # A forged version on top of the locked copy: the checksum check must name the key.
    cold(dev).put_object(Bucket=dev.env["AWS_S3_BUCKET_DOCUMENTS_COLD"], Key="checked/fine.pdf", Body=b"forged",
                         ChecksumAlgorithm="SHA256")
    assert wait_for_run(api, api.launch_run("cold_copies_checks_job", partition=day())) == "FAILURE"

    status = cli(dev, "status", "--json")
    assert status.returncode == 1
    report = json.loads(status.stdout)
    failed = {c["check"]: c for c in report["failed_checks"]}
    assert "cold_copies:checksum" in failed, report["failed_checks"]
    assert failed["cold_copies:checksum"]["day"] == day()
    assert "checked/fine.pdf" in failed["cold_copies:checksum"]["failing_keys"]
    assert any(line.startswith("check cold_copies:checksum failed for") and "checked/fine.pdf" in line
               for line in report["attention"])
    assert "cold_copies:checksum" in cli(dev, "status").stdout
    # Copied minutes ago and never verified is not overdue; copied longer ago than the period is.
    assert report["verification"]["overdue_days"] == 0
    with psycopg.connect(dev.env["VAULT_DATABASE_URL"]) as conn:
        conn.execute("UPDATE vault_secure.replication_status SET replicated_at = now() - interval '31 days'")
    report = json.loads(cli(dev, "status", "--json").stdout)
    assert report["verification"]["overdue_days"] == 1
    assert report["verification"]["oldest_overdue_day"] == today().isoformat()
    assert f"1 day(s) not verified within 30 days (oldest {today()})" in report["attention"]


def test_errors_are_one_line_with_a_non_zero_exit(dev: DevServer) -> None:
    secret_dsn = "postgresql://vault:s3cr3t-pw@127.0.0.1:9/vault"
    down = cli(dev, "status", VAULT_DATABASE_URL=secret_dsn)
    assert down.returncode == 2 and down.stdout == ""
    assert down.stderr.startswith("vault-pipeline status: error: tracking database")
    assert len(down.stderr.strip().splitlines()) == 1 and "s3cr3t-pw" not in down.stderr
    assert "Traceback" not in down.stderr

    no_dagster = cli(dev, "status", "--json", "--dagster-url", "http://127.0.0.1:9")
    assert no_dagster.returncode == 1  # the database part is there; what Dagster would say is not
    report = json.loads(no_dagster.stdout)
    assert "error" in report["dagster"]
    assert any("Dagster does not answer" in line for line in report["attention"])

    retry = cli(dev, "retry-failed", "--dagster-url", "http://127.0.0.1:9")
    if "nothing to retry" not in retry.stdout:  # rows left failed by the earlier test
        assert retry.returncode == 2
        assert retry.stderr.startswith("vault-pipeline retry-failed: error: Dagster: http://127.0.0.1:9/graphql:")
        assert len(retry.stderr.strip().splitlines()) == 1

    bad_config = cli(dev, "status", VAULT_SENSOR_INTERVAL_SECONDS="often")
    assert bad_config.returncode == 2 and "VAULT_SENSOR_INTERVAL_SECONDS='often'" in bad_config.stderr
    bad_day = cli(dev, "retry-failed", "--day", "yesterday")
    assert bad_day.returncode == 2 and "'yesterday' is not a YYYY-MM-DD day" in bad_day.stderr
