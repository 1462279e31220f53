"""VaultCeleryRunLauncher: dagster-celery's CeleryRunLauncher with the two things a cluster of ours needs.

* Each run is tagged with the code version of the daemon that launches it (`vault/code_version`); a worker
  of another version refuses the run before executing anything (cluster/worker.py).
* A dead worker is told from a busy one. dagster-celery reads the task's state from the result backend, where
  a worker killed with its process tree leaves `STARTED` for ever: run monitoring would never fail the run,
  and its rows would wait for a run that cannot come. Here a started task that no live worker reports as
  active for `dead_after_seconds` is a dead run: monitoring marks it failed, its rows' leases expire, and
  the sensor asks for a new run.

Broker and backend must be Redis (cluster/settings.py). Use it with the in-process or multiprocess executor,
never with `celery_executor` (dagster issues #29660, #32915): the workers do not even register its task.
"""

from __future__ import annotations

import time
from typing import Any

from dagster import Field, Noneable, StringSource
from dagster_celery.config import DEFAULT_CONFIG
from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG

from vault_pipeline.cluster.code_version import code_version
from vault_pipeline.cluster.inspect import ActiveTasks, BrokerUnreachable
from vault_pipeline.cluster.settings import (
    BACKEND_ENV,
    BROKER_ENV,
    CELERY_CONFIG,
    QUEUE_ENV,
    ClusterSettings,
    check_queue,
    check_redis_url,
    queue_from_env,
    redacted,
)
from vault_pipeline.dagster_compat import (
    CheckRunHealthResult,
    ConfigurableClassData,
    LaunchRunContext,
    WorkerStatus,
)

CODE_VERSION_TAG = "vault/code_version"
DEAD_AFTER_SECONDS = 30.0


class VaultCeleryRunLauncher(CeleryRunLauncher):
    def __init__(self, default_queue: str | None = None, broker: str | None = None, backend: str | None = None,
                 include: list[str] | None = None, config_source: dict | None = None,
                 dead_after_seconds: float = DEAD_AFTER_SECONDS, inst_data: ConfigurableClassData | None = None
                 ) -> None:
        # Broker and backend from the instance's config, or else from the environment (the queue likewise).
        env = ClusterSettings.from_env() if not (broker and backend) else None
        broker = check_redis_url(BROKER_ENV, broker or (env.broker_url if env else ""))
        backend = check_redis_url(BACKEND_ENV, backend or (env.result_backend if env else ""))
        queue = check_queue(QUEUE_ENV, default_queue) if default_queue else queue_from_env()
        super().__init__(default_queue=queue, broker=broker, backend=backend, include=include,
                         config_source={**DEFAULT_CONFIG, **CELERY_CONFIG, **(config_source or {})},
                         inst_data=inst_data)
        self.dead_after_seconds = dead_after_seconds
        self._active = ActiveTasks(self.celery)
        self._unseen_since: dict[str, float] = {}  # run id -> when its task was first found on no worker

    def __repr__(self) -> str:  # never the URLs' passwords
        return f"VaultCeleryRunLauncher(broker={redacted(self.broker or '')!r}, queue={self.default_queue!r})"

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        config = dict(super().config_type())
        config["default_queue"] = Field(Noneable(StringSource), is_required=False, default_value=None,
                                        description=f"Queue of runs without a dagster-celery/queue tag "
                                        f"(default: {QUEUE_ENV}, else 'dagster').")
        config["backend"] = Field(Noneable(StringSource), is_required=False, default_value=None,
                                  description=f"Redis result backend (default: {BACKEND_ENV}).")
        config["dead_after_seconds"] = Field(float, is_required=False, default_value=DEAD_AFTER_SECONDS,
                                             description="A started run whose task no live worker reports for "
                                             "this long is marked failed by run monitoring.")
        return config

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        self._instance.add_run_tags(run.run_id, {CODE_VERSION_TAG: code_version()})
        tagged = self._instance.get_run_by_id(run.run_id) or run
        super().launch_run(LaunchRunContext(dagster_run=tagged, workspace=context.workspace))

    def check_run_worker_health(self, run: Any) -> CheckRunHealthResult:
        task_id = run.tags.get(DAGSTER_CELERY_TASK_ID_TAG)
        if not task_id:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run has no Celery task id: it was never "
                                        "forwarded to the broker")
        try:
            result = self.celery.AsyncResult(task_id)
            state = result.state
            if state == "SUCCESS":
                return CheckRunHealthResult(WorkerStatus.SUCCESS)
            if state == "FAILURE":
                return CheckRunHealthResult(WorkerStatus.FAILED, f"Celery task failed: {result.result!r}")
            worker = self._active.worker_of(task_id)
        except BrokerUnreachable as exc:
            # Nothing can be told while Redis is away; the run itself needs no broker and goes on.
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"broker unreachable, not checked: {exc}")
        except Exception as exc:  # the result backend's connection errors
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"result backend unreachable, not checked: "
                                        f"{type(exc).__name__}: {exc}")
        now = time.monotonic()
        self._forget_old(now)
        if worker is not None:
            self._unseen_since.pop(run.run_id, None)
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"running on {worker}")
        first = self._unseen_since.setdefault(run.run_id, now)
        if now - first < self.dead_after_seconds:
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"task {task_id} ({state}) on no live worker for "
                                        f"{now - first:.0f} s")
        self._unseen_since.pop(run.run_id, None)
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"no live Celery worker has run task {task_id} (last state {state}) for {now - first:.0f} s: its "
            "worker died with the run (killed, or its machine lost). Rows it held are taken over when their "
            "leases expire.")

    def _forget_old(self, now: float) -> None:
        for run_id, since in list(self._unseen_since.items()):
            if now - since > 86400:
                del self._unseen_since[run_id]
