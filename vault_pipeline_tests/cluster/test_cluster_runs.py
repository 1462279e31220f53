"""Runs on Celery workers, end to end: real Redis, real workers (each its own process tree), `dagster dev`
with VaultCeleryRunLauncher, the sensor launching runs. Module order matters: the worker kill comes last.

* the README's quick-start document goes through a worker, and `vault-pipeline status` names the workers;
* a worker of another code version refuses a run: failed with the reason, no step executed;
* Redis stopped: a run in flight finishes, runs launched meanwhile fail visibly, and the day is replicated
  once Redis is back;
* a worker's whole process tree SIGKILLed mid-copy: run monitoring fails its run, the leases expire, the other
  worker's run finishes the rows, each object copied once, no multipart upload left open.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from vault_pipeline.cluster.launcher import CODE_VERSION_TAG
from vault_pipeline.devstack.devserver import REPO_ROOT
from vault_pipeline.devstack.workers import CeleryWorker
from vault_pipeline_tests.cluster.conftest import Cluster

MiB = 1024 * 1024


def status_json(cluster: Cluster) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "OVH_S3_", "AWS_S3_"))}
    done = subprocess.run([sys.executable, "-m", "vault_pipeline.cli", "status", "--json"], capture_output=True,
                          text=True, env={**env, **cluster.env}, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_quick_start_document_is_replicated_by_a_celery_worker(cluster: Cluster) -> None:
    cluster.upload({"test.pdf": 12}, document_type="payslip")
    cluster.wait_replicated(["test.pdf"], timeout_s=120)
    run = cluster.wait_until("the run finished", lambda: next(
        (r for r in cluster.runs() if r["status"] == "SUCCESS"), None), 60)
    assert run["tags"].get("dagster-celery/task_id"), "the run did not go through Celery"
    assert run["tags"].get(CODE_VERSION_TAG), "the launcher did not record its code version"
    messages = " ".join(e.get("message") or "" for e in cluster.api.messages(run["runId"]))
    assert "Celery task has been forwarded to the broker" in messages
    logs = {w["name"]: Path(w["log"]).read_text() for w in cluster.info["workers"]}
    assert sum(run["tags"]["dagster-celery/task_id"] in text for text in logs.values()) == 1, \
        "exactly one worker should have executed the run's task"

    status = status_json(cluster)["cluster"]
    assert status["configured"] and not status.get("error"), status
    assert sorted(w["name"].split("@")[0] for w in status["workers"]) == ["worker1", "worker2"]
    assert status["queued_runs"] == 0


def test_worker_of_another_code_version_refuses_the_run(cluster: Cluster) -> None:
    """The run is routed (dagster-celery/queue tag) to a worker whose code version differs from the
    daemon's: it is failed with the reason before any step starts."""
    queue = f"old-code-{uuid.uuid4().hex[:6]}"
    stale = CeleryWorker("stale", cluster.server.root, {
        **cluster.env, "DAGSTER_HOME": str(cluster.server.root / "dagster_home"),
        "VAULT_CODE_VERSION": "0.0.9-previous-release", "VAULT_CELERY_QUEUE": queue,
    }, REPO_ROOT).start()
    try:
        stale.wait_ready()
        partition = cluster.upload({"version-check/a.pdf": 100})
        run_id = cluster.api.launch_run("replication_job", partition=partition,
                                        tags={"dagster-celery/queue": queue})
        cluster.wait_until("the run refused", lambda: cluster.api.run(run_id)["status"] == "FAILURE", 120)
        events = cluster.api.messages(run_id)
        refusal = [e["message"] for e in events if "refused by Celery worker stale@" in (e.get("message") or "")]
        assert refusal, [e.get("message") for e in events]
        assert "0.0.9-previous-release" in refusal[0] and "Nothing was executed" in refusal[0]
        assert not [e for e in events if e["__typename"] in ("ExecutionStepStartEvent", "RunStartEvent")], \
            "a refused run must not start a step"
    finally:
        stale.stop()
    # The document itself is replicated by the sensor's own run on the right workers.
    cluster.wait_replicated(["version-check/a.pdf"], timeout_s=120)


@pytest.mark.slow
def test_redis_stopped_runs_fail_visibly_and_resume_when_it_returns(cluster: Cluster) -> None:
    in_flight = {f"redis/in-flight-{n:02d}.pdf": 20 * MiB for n in range(6)}
    cluster.upload(in_flight)

    def started_run() -> str | None:
        if not any(r["status"] == "in_progress" for r in cluster.rows(list(in_flight)).values()):
            return None
        return next((r["runId"] for r in cluster.runs() if r["status"] == "STARTED"), None)

    running = cluster.wait_until("a run copying", started_run, 120)
    before = {r["runId"] for r in cluster.runs()}
    cluster.stop_redis()
    try:
        # The run in flight needs PostgreSQL and S3, not the broker: it finishes.
        cluster.wait_until("the run in flight finished", lambda: cluster.api.run(running)["status"] in (
            "SUCCESS", "FAILURE"), 180)
        assert cluster.api.run(running)["status"] == "SUCCESS"
        # A document arriving now gets a run that cannot be launched: it fails, visibly, with the reason.
        during = {"redis/during-outage.pdf": 1000}
        cluster.upload(during)
        cluster.wait_until("the new document registered", lambda: cluster.rows(list(during)), 60)

        def failed_launch() -> dict | None:
            for run in cluster.runs():
                if run["runId"] not in before and run["status"] == "FAILURE":
                    return run
            return None

        failed = cluster.wait_until("a run failed to launch", failed_launch, 120)
        text = " ".join(e.get("message") or "" for e in cluster.api.messages(failed["runId"]))
        assert "Caught an unrecoverable error while dequeuing the run" in text, text[:2000]
        # No run could take it while Redis was away.
        assert cluster.rows(list(during))["redis/during-outage.pdf"]["status"] == "pending"
    finally:
        cluster.start_redis_again()
    # Redis is back: the sensor asks again for the day, a worker (reconnected) runs it, and whatever of the
    # first upload was registered after the stop is copied too.
    cluster.wait_replicated([*in_flight, *during], timeout_s=180)
    assert not cluster.open_uploads()


@pytest.mark.slow
def test_killed_worker_tree_its_rows_are_finished_by_the_other_worker(cluster: Cluster) -> None:
    keys = {f"kill/big-{n:02d}.pdf": 64 * MiB for n in range(6)} | {f"kill/small-{n:03d}.pdf": 2000 for n in range(40)}
    cluster.upload(keys)

    def victim() -> tuple[str, str] | None:
        """The worker (and its run) whose pool process has a multipart upload open: a lease owner is
        `<run id>/<pid of the process copying>`, and that process is in one worker's tree."""
        for row in cluster.rows(list(keys)).values():
            if row["cold_upload_id"] and row["lease_owner"]:
                run_id, pid = str(row["lease_owner"]).rsplit("/", 1)
                for worker in cluster.info["workers"]:
                    try:
                        tree = psutil.Process(int(worker["pid"])).children(recursive=True)
                    except psutil.NoSuchProcess:
                        continue
                    if int(pid) in {p.pid for p in tree}:
                        return worker["name"], run_id
        return None

    name, run_id = cluster.wait_until("a worker mid-upload", victim, 180, every=0.05)
    cluster.kill_worker_tree(name)
    # Run monitoring finds no live worker running the task: the run is failed with the reason.
    cluster.wait_until("the killed run marked failed", lambda: cluster.api.run(run_id)["status"] == "FAILURE", 150)
    text = " ".join(e.get("message") or "" for e in cluster.api.messages(run_id))
    assert "no live Celery worker" in text, text[-2000:]
    # Its leases expire; the sensor asks for the day again; the surviving worker finishes every row.
    cluster.wait_replicated(list(keys), timeout_s=240)
    finishing = [r for r in cluster.runs() if r["status"] == "SUCCESS" and r["runId"] != run_id]
    assert finishing, "no run finished the rows"
    for key in keys:
        assert len(cluster.cold_versions(key)) == 1, f"{key} copied {len(cluster.cold_versions(key))} times"
    assert not cluster.open_uploads(), f"multipart uploads left open: {cluster.open_uploads()}"
