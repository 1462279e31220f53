"""restore_tracking_db killed mid-step, then re-executed from failure the way the UI does it (Dagster's own
re-execution, a persistent instance, outputs of the steps that succeeded loaded from its IO manager)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from dagster import DagsterInstance, JobDefinition, ReexecutionOptions, execute_job, reconstructable

from vault_pipeline_tests.assets.test_db_backup import back_up, business_rows, replicate
from vault_pipeline_tests.conftest import Vault, sql

pytestmark = pytest.mark.slow


def restore_job() -> JobDefinition:
    """The job as `dagster dev` loads it, from the environment (module level: reconstructable)."""
    from vault_pipeline.definitions import build_definitions
    from vault_pipeline.settings import load_settings

    return build_definitions(load_settings()[0]).resolve_job_def("restore_tracking_db")


def kill_when_running(marker: str, stop: threading.Event, killed: list[int]) -> None:
    """SIGKILL every pg_restore whose command line has `marker`, as soon as one appears."""
    while not stop.is_set():
        for process in psutil.process_iter(["name", "cmdline"]):
            try:
                if process.info["name"] == "pg_restore" and marker in " ".join(process.info["cmdline"] or []):
                    process.send_signal(signal.SIGKILL)
                    killed.append(process.pid)
            except psutil.Error:
                continue
        if killed:
            return
        stop.wait(0.005)


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_restore_killed_mid_data_is_re_executed_from_failure(vault: Vault, secondary_dsn: str,
                                                               tmp_path: Path) -> None:
    replicate(vault, "doc", 4)
    # Enough rows that the data step lasts long enough to be killed in the middle of it.
    with psycopg.connect(vault.dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO vault_secure.audit_logs (event_type, object_key, source_bucket, metadata)"
                     " SELECT 'REPLICATION_FAILURE', 'filler/' || i, 'hot',"
                     " jsonb_build_object('i', i, 'pad', repeat('x', 80)) FROM generate_series(1, 400000) i")
    back_up(vault)
    vault.configure(VAULT_RESTORE_DATABASE_URL=secondary_dsn, VAULT_PG_RESTORE_JOBS="2")
    run_config: dict[str, Any] = {"ops": {"fetch_backup": {"config": {"backup_id": "latest"}}}}
    (tmp_path / "dagster").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
        stop, killed = threading.Event(), []
        killer = threading.Thread(target=kill_when_running, args=("--section=data", stop, killed), daemon=True)
        killer.start()
        try:
            with execute_job(reconstructable(restore_job), instance=instance, run_config=run_config,
                             raise_on_error=False) as first:
                assert not first.success
                failed = [e.step_key for e in first.all_events if e.is_step_failure]
                first_run = first.run_id
        finally:
            stop.set()
            killer.join()
        assert killed and failed == ["restore_data"]
        assert sql(secondary_dsn, "SELECT count(*) FROM vault_secure.audit_logs")[0][0] < 400_000

        options = ReexecutionOptions.from_failure(first_run, instance)
        with execute_job(reconstructable(restore_job), instance=instance, reexecution_options=options,
                         raise_on_error=False) as second:
            assert second.success
            ran = {e.step_key for e in second.all_events if e.is_step_success}
            report = second.output_for_node("restore_notify")
        assert "fetch_backup" not in ran and "restore_pre_data" not in ran  # done by the first run, not again
        assert {"restore_data", "restore_post_data", "restore_verify"} <= ran
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["fetch"]["run_id"] == steps["pre-data"]["run_id"] == first_run
    assert steps["data"]["run_id"] == steps["verify"]["run_id"] == second.run_id
    assert business_rows(secondary_dsn) == business_rows(vault.dsn)
    # The operator's report of the re-executed run: every step, the parent run's included.
    shown = subprocess.run([sys.executable, "-m", "vault_pipeline.cli", "db-report", second.run_id, "--dagster-home",
                            str(tmp_path / "dagster"), "--json"], capture_output=True, text=True, timeout=120,
                           check=False)
    assert shown.returncode == 0, shown.stderr
    printed = json.loads(shown.stdout)
    assert printed["runs"] == [second.run_id] and {s["step"] for s in printed["steps"]} >= {"fetch", "data", "notify"}
    assert printed["by_kind"]["TABLE DATA"]["items"] >= 2 and printed["by_kind"]["INDEX"]["seconds"] >= 0
    text = subprocess.run([sys.executable, "-m", "vault_pipeline.cli", "db-report", first_run, "--dagster-home",
                           str(tmp_path / "dagster")], capture_output=True, text=True, timeout=120, check=False)
    assert text.returncode == 0 and "| pre-data |" in text.stdout and "| data |" not in text.stdout, text.stdout
    assert sql(secondary_dsn, "SELECT count(*) FROM vault_secure.audit_logs") == \
        sql(vault.dsn, "SELECT count(*) FROM vault_secure.audit_logs")
