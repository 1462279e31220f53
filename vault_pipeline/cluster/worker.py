"""The Celery app every worker runs: `vault-pipeline worker` = `celery -A vault_pipeline.cluster.worker worker`.

It registers the two tasks the run launcher sends, `execute_job` and `resume_job`, under dagster-celery's
names and with its own run-execution body, preceded by one check: the run must have been launched by a daemon
running the same code version as this worker (cluster/code_version.py). A run of another version is marked
failed with the reason, before any step starts; nothing of it executes. dagster-celery's `execute_plan` (the
`celery_executor` task) is deliberately not registered: that combination is not supported (launcher.py).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import signals
from dagster import DagsterInstance
from dagster_celery.config import DEFAULT_CONFIG, TASK_EXECUTE_JOB_NAME, TASK_RESUME_JOB_NAME
from dagster_celery.make_app import make_app

from vault_pipeline.cluster.code_version import code_version
from vault_pipeline.cluster.launcher import CODE_VERSION_TAG
from vault_pipeline.cluster.settings import CELERY_CONFIG, WORKER_CELERY_CONFIG, ClusterSettings, redacted
from vault_pipeline.dagster_compat import (
    ExecuteRunArgs,
    ResumeRunArgs,
    execute_run_command_body,
    resume_run_command_body,
    unpack_value,
)

log = logging.getLogger("vault_pipeline.cluster.worker")

settings = ClusterSettings.from_env()
app = make_app(app_args={
    "broker": settings.broker_url,
    "backend": settings.result_backend,
    "include": [],
    "config_source": {**DEFAULT_CONFIG, **CELERY_CONFIG, **WORKER_CELERY_CONFIG},
    "task_default_queue": settings.queue,
})
# One run per pool process, then a fresh process: a run leaves nothing (threads, pools, memory) to the next,
# as with Dagster's default launcher, which starts a process per run.
app.conf.worker_max_tasks_per_child = 1


def version_refusal(run: Any, worker: str) -> str | None:
    """Why this worker must not execute `run`, or None."""
    mine = code_version()
    launched = run.tags.get(CODE_VERSION_TAG)
    if launched == mine:
        return None
    origin = (f"a daemon running vault-pipeline {launched}" if launched else
              "a launcher that records no code version (not VaultCeleryRunLauncher)")
    return (f"refused by Celery worker {worker}: this run was launched by {origin}, but this worker runs "
            f"{mine}. Nothing was executed. Deploy one version on the daemon and every worker "
            f"(docs/deployment.md, 'Upgrades'), then re-execute the run.")


def _run_checked(task: Any, run_id: str, body: Any) -> int:
    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        if run is None:
            raise RuntimeError(f"run {run_id} is not in this worker's Dagster instance (DAGSTER_HOME="
                               f"{os.environ.get('DAGSTER_HOME')}): the worker and the daemon must share it")
        refusal = version_refusal(run, task.request.hostname or "?")
        if refusal:
            log.error("%s (run %s)", refusal, run_id)
            instance.report_engine_event(refusal, run)
            instance.report_run_failed(run, refusal)
            return 1
        return body(instance=instance, run_id=run_id, write_stream_fn=lambda _event: None,
                    set_exit_code_on_failure=True)


@app.task(bind=True, name=TASK_EXECUTE_JOB_NAME, track_started=True)
def execute_job(self: Any, execute_job_args_packed: Any) -> int:
    args = unpack_value(val=execute_job_args_packed, as_type=ExecuteRunArgs)
    return _run_checked(self, args.run_id, execute_run_command_body)


@app.task(bind=True, name=TASK_RESUME_JOB_NAME, track_started=True)
def resume_job(self: Any, execute_job_args_packed: Any) -> int:
    args = unpack_value(val=execute_job_args_packed, as_type=ResumeRunArgs)
    return _run_checked(self, args.run_id, resume_run_command_body)


@signals.worker_ready.connect
def _announce(sender: Any = None, **_kwargs: Any) -> None:
    hostname = getattr(sender, "hostname", "?")
    log.warning("vault-pipeline worker %s ready: code version %s, queue %s, broker %s, spool %s", hostname,
                code_version(), settings.queue, redacted(settings.broker_url),
                os.environ.get("VAULT_SPOOL_DIR") or "(none: memory buffers)")
