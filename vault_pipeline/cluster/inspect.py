"""What the Celery workers are and what each one runs, asked of the workers themselves over the broker.

One broadcast (`inspect`: ping, stats, active) reaches every live worker; each answers from its main process,
which stays responsive while its pool processes run. A worker killed with its process tree answers nothing:
that is how a dead worker is told from a busy one.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from celery import Celery

from vault_pipeline.cluster.settings import CELERY_CONFIG, ClusterConfigurationError, ClusterSettings, redacted

REPLY_TIMEOUT_S = 2.0


class BrokerUnreachable(RuntimeError):
    """The broker (Redis) did not answer: nothing can be said about the workers."""


@dataclass(frozen=True)
class ActiveRun:
    task_id: str
    run_id: str | None
    started_at: float | None  # epoch seconds, as the worker reports it


@dataclass(frozen=True)
class WorkerState:
    name: str
    pid: int | None
    pool_processes: int | None
    queues: tuple[str, ...]
    active: tuple[ActiveRun, ...] = field(default_factory=tuple)


def _run_id(task: dict[str, Any]) -> str | None:
    """The Dagster run a task executes: its packed ExecuteRunArgs / ResumeRunArgs carry `run_id`."""
    for value in [*(task.get("kwargs") or {}).values(), *(task.get("args") or [])]:
        if isinstance(value, dict) and isinstance(value.get("run_id"), str):
            return value["run_id"]
    return None


def workers(app: Celery, timeout: float = REPLY_TIMEOUT_S) -> list[WorkerState]:
    """Every worker that answers within `timeout`, with the runs it executes; BrokerUnreachable when Redis
    does not answer."""
    inspector = app.control.inspect(timeout=timeout)
    try:
        stats = inspector.stats() or {}
        active = inspector.active() or {}
        queues = inspector.active_queues() or {}
    except Exception as exc:  # kombu/redis connection errors come in several types
        raise BrokerUnreachable(f"{type(exc).__name__}: {exc}") from exc
    states = []
    for name in sorted(set(stats) | set(active)):
        info = stats.get(name) or {}
        pool = info.get("pool") or {}
        runs = tuple(ActiveRun(task_id=str(t.get("id")), run_id=_run_id(t), started_at=t.get("time_start"))
                     for t in active.get(name) or [])
        states.append(WorkerState(
            name=name, pid=info.get("pid"), pool_processes=pool.get("max-concurrency"),
            queues=tuple(sorted(q.get("name", "?") for q in queues.get(name) or [])), active=runs))
    return states


class ActiveTasks:
    """The task ids every live worker is executing, asked at most once per `max_age` seconds (run
    monitoring checks every started run in turn: one broadcast serves them all)."""

    def __init__(self, app: Celery, max_age: float = 5.0, timeout: float = REPLY_TIMEOUT_S) -> None:
        self.app, self.max_age, self.timeout = app, max_age, timeout
        self._at = float("-inf")
        self._tasks: dict[str, str] = {}  # task id -> worker name

    def worker_of(self, task_id: str) -> str | None:
        if time.monotonic() - self._at > self.max_age:
            # Only `active`: one broadcast, not the three of `workers()` (each waits out the reply timeout).
            try:
                active = self.app.control.inspect(timeout=self.timeout).active() or {}
            except Exception as exc:  # kombu/redis connection errors come in several types
                raise BrokerUnreachable(f"{type(exc).__name__}: {exc}") from exc
            self._tasks = {str(t.get("id")): name for name, tasks in active.items() for t in tasks or []}
            self._at = time.monotonic()
        return self._tasks.get(task_id)


def client_app(settings: ClusterSettings) -> Celery:
    """A Celery app that talks to the cluster's broker without being a worker (status, benchmarks, tests)."""
    from dagster_celery.config import DEFAULT_CONFIG
    from dagster_celery.make_app import make_app

    return make_app(app_args={"broker": settings.broker_url, "backend": settings.result_backend, "include": [],
                              "config_source": {**DEFAULT_CONFIG, **CELERY_CONFIG},
                              "task_default_queue": settings.queue})


def queued_runs(app: Celery, queue: str) -> int:
    """Runs launched and waiting in the broker for a free worker."""
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        try:
            return int(channel.queue_declare(queue=queue, passive=True).message_count)
        except conn.channel_errors as exc:
            if "NOT_FOUND" in str(exc):  # Redis keeps no key for an empty queue
                return 0
            raise


def cluster_status(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The workers and what each runs, for `vault-pipeline status`: {"configured": False} without a broker
    setting; "error" when the broker does not answer."""
    if not ClusterSettings.configured(environ):
        return {"configured": False}
    try:
        settings = ClusterSettings.from_env(environ)
    except ClusterConfigurationError as exc:
        return {"configured": True, "error": str(exc), "workers": []}
    app = client_app(settings)
    try:
        found = workers(app)
        queued = queued_runs(app, settings.queue)
    except Exception as exc:
        return {"configured": True, "broker": redacted(settings.broker_url), "queue": settings.queue,
                "error": f"broker unreachable: {type(exc).__name__}: {exc}", "workers": []}
    finally:
        app.close()
    return {"configured": True, "broker": redacted(settings.broker_url), "queue": settings.queue,
            "queued_runs": queued, "workers": [asdict(w) for w in found]}
