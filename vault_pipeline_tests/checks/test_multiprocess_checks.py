"""The checks under the multiprocess executor, for real: every step of replication_job in its own process.

`execute_in_process` (the other tests) runs every step in the test's process, so it cannot show that
nothing is shared through memory. Here `execute_job` runs a reconstructable replication_job, built with
`multiprocess_executor`, on a persistent instance: each step is a fresh Python process that loads the
definitions from the environment. The six checks must evaluate once each, judge this run's copies from
the copy step's verification (which only the database carries from that process to theirs), catch a
forged cold version, and, being blocking, keep hot_deletions from running in the same run.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    JobDefinition,
    execute_job,
    multiprocess_executor,
    reconstructable,
)

from vault_pipeline.definitions import build_definitions
from vault_pipeline.settings import load_settings
from vault_pipeline_tests.checks.test_tampering import ASPECTS
from vault_pipeline_tests.conftest import Vault, today_key

CHECK_STEP = "cold_copies_audit"


def multiprocess_replication_job() -> JobDefinition:
    """replication_job with one process per step, as each of those processes loads it (from the environment)."""
    return build_definitions(load_settings()[0], executor=multiprocess_executor).resolve_job_def("replication_job")


def run_multiprocess(vault: Vault, instance: DagsterInstance) -> Any:
    vault.run_sensor()  # the sweep registers the new hot objects, the sensor asks for their run
    return execute_job(
        reconstructable(multiprocess_replication_job), instance=instance, tags={"dagster/partition": today_key()},
        run_config={"execution": {"config": {"max_concurrent": 2}}},
    )


def step_facts(result: Any) -> dict[str, dict[str, Any]]:
    """Per step: the pid it ran in, its duration and how it ended."""
    steps: dict[str, dict[str, Any]] = {}
    for event in result.all_events:
        if not event.step_key:
            continue
        step = steps.setdefault(event.step_key, {})
        if event.event_type == DagsterEventType.STEP_START:
            step["pid"] = event.pid
        elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            step["outcome"] = event.event_type_value
            step["duration_s"] = event.event_specific_data.duration_ms / 1000 if event.event_type == (
                DagsterEventType.STEP_SUCCESS) else None
        elif event.event_type == DagsterEventType.STEP_SKIPPED:
            step["outcome"] = event.event_type_value
    return steps


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_checks_hold_under_the_multiprocess_executor(vault: Vault, tmp_path: Path) -> None:
    vault.configure(DELETE_FROM_OVH_AFTER_REPLICATION="true")  # so that blocking is visible: it guards deletions
    for i in range(6):
        vault.put(f"mp/{i}.pdf", f"document {i}".encode(), {"document-type": "invoice"})
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        first = run_multiprocess(vault, instance)
        assert first.success
        steps = step_facts(first)
        pids = {key: step["pid"] for key, step in steps.items()}
        assert len(set(pids.values())) == 4 and os.getpid() not in pids.values(), pids  # 4 steps, 4 processes
        checks = {e.check_name: e for e in first.get_asset_check_evaluations()}
        assert sorted(checks) == sorted(ASPECTS) and all(e.passed for e in checks.values())
        assert all(e.partition == today_key() for e in checks.values())
        # The copy step's verification reached the check step's process (through the database).
        assert {e.metadata["judged_from_this_runs_verification"].value for e in checks.values()} == {6}
        assert not vault.hot.list_objects_v2(Bucket=vault.hot_bucket).get("Contents")  # checks passed: deleted
        print(f"multiprocess run: check step {steps[CHECK_STEP]['duration_s']:.2f} s, "
              f"copy step {steps['cold_copies']['duration_s']:.2f} s")

        # A forged version on top of a verified copy, and two new documents copied by the next run.
        vault.cold.put_object(Bucket=vault.cold_bucket, Key="mp/0.pdf", Body=b"forged", ChecksumAlgorithm="SHA256")
        for i in (6, 7):
            vault.put(f"mp/{i}.pdf", f"document {i}".encode(), {"document-type": "invoice"})
        second = run_multiprocess(vault, instance)
        assert not second.success
        checks = {e.check_name: e for e in second.get_asset_check_evaluations()}
        assert sorted(checks) == sorted(ASPECTS)
        assert not checks["checksum"].passed and checks["checksum"].metadata["failing_keys"].value == ["mp/0.pdf"]
        assert checks["checksum"].metadata["days"].value == [dt.datetime.now(dt.UTC).date().isoformat()]
        assert all(e.passed for name, e in checks.items() if name != "checksum"), {
            name: e.metadata["failing_keys"].value for name, e in checks.items()}
        assert {e.metadata["judged_from_this_runs_verification"].value for e in checks.values()} == {2}
        steps = step_facts(second)
        assert steps["cold_copies"]["outcome"] == "STEP_SUCCESS" and steps[CHECK_STEP]["outcome"] == "STEP_FAILURE"
        assert steps.get("hot_deletions", {}).get("outcome") in (None, "STEP_SKIPPED")  # held back by the check
        hot = {o["Key"] for o in vault.hot.list_objects_v2(Bucket=vault.hot_bucket).get("Contents", [])}
        assert hot == {"mp/6.pdf", "mp/7.pdf"}  # copied, and not deleted on a day whose checks failed
