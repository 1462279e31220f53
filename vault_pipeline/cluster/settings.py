"""The cluster's variables: where the Celery broker and result backend are, which queue runs go to.

Only Redis is accepted, for both: the broker keeps launched runs across a Redis restart (AOF), and the result
backend keeps each run's task state, which run monitoring reads. `rpc://` (dagster-celery's default) keeps
results in the memory of the process that asked, so a restarted daemon could not tell a dead run.
The URLs may carry a password: they are secrets, read from the environment and never printed whole.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

BROKER_ENV = "VAULT_CELERY_BROKER_URL"
BACKEND_ENV = "VAULT_CELERY_RESULT_BACKEND"
QUEUE_ENV = "VAULT_CELERY_QUEUE"
DEFAULT_QUEUE = "dagster"  # dagster-celery's own default queue name
REDIS_SCHEMES = ("redis", "rediss")
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class ClusterConfigurationError(ValueError):
    """A cluster variable is missing or invalid; the message names it."""


def redacted(url: str) -> str:
    """`url` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def check_redis_url(name: str, url: str) -> str:
    url = url.strip()
    if not url:
        raise ClusterConfigurationError(f"{name} is not set: the Celery run launcher needs Redis "
                                        "(redis://host:6379/0; docs/deployment.md)")
    scheme = urlsplit(url).scheme
    if scheme not in REDIS_SCHEMES:
        raise ClusterConfigurationError(
            f"{name}={redacted(url)!r}: only redis:// or rediss:// is supported"
            + (" (rpc:// loses every run's state when the daemon restarts)" if scheme == "rpc" else ""))
    if not urlsplit(url).hostname:
        raise ClusterConfigurationError(f"{name}={redacted(url)!r} names no host")
    return url


def check_queue(name: str, queue: str) -> str:
    if not _QUEUE_NAME.match(queue):
        raise ClusterConfigurationError(f"{name}={queue!r} is not a queue name (letters, digits, _ . -)")
    return queue


def queue_from_env(environ: dict[str, str] | None = None) -> str:
    """VAULT_CELERY_QUEUE, else dagster-celery's default queue; checked."""
    env = os.environ if environ is None else environ
    return check_queue(QUEUE_ENV, env.get(QUEUE_ENV, "").strip() or DEFAULT_QUEUE)


@dataclass(frozen=True)
class ClusterSettings:
    broker_url: str
    result_backend: str
    queue: str = DEFAULT_QUEUE

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ClusterSettings:
        env = os.environ if environ is None else environ
        broker = check_redis_url(BROKER_ENV, env.get(BROKER_ENV, ""))
        backend = check_redis_url(BACKEND_ENV, env.get(BACKEND_ENV, ""))
        return cls(broker, backend, queue_from_env(env))

    @staticmethod
    def configured(environ: dict[str, str] | None = None) -> bool:
        """Whether this environment names a cluster at all (the broker is set)."""
        env = os.environ if environ is None else environ
        return bool(env.get(BROKER_ENV, "").strip())


# Celery settings both sides share (the launcher's app publishes, the workers' app consumes). dagster-celery
# adds its own defaults (prefetch 1, the priority queue); these are ours, each for a reason:
CELERY_CONFIG = {
    # A worker that loses Redis keeps running its run (a run needs PostgreSQL and S3, not the broker) and
    # reconnects for as long as it takes; Celery's default gives up after 100 attempts and exits.
    "broker_connection_retry_on_startup": True,
    "broker_connection_max_retries": None,
    "worker_cancel_long_running_tasks_on_connection_loss": False,
    # A run's task is acknowledged when a worker takes it (Celery's default, said explicitly): a worker that
    # dies is never handed the same run again by Celery. Dagster's run monitoring marks that run failed and
    # the sensor asks for a new run once its rows' leases expire (docs/deployment.md).
    "task_acks_late": False,
    # Results (a run's exit code) are kept a week: `vault-pipeline status` and run monitoring read them.
    "result_expires": 7 * 24 * 3600,
    "worker_hijack_root_logger": False,
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
}
# Workers only: the end state of a run's task is written when Redis is back, not dropped. (Never on the
# daemon's side: a read of a task's state would then block run monitoring for the whole outage.)
WORKER_CELERY_CONFIG = {
    "result_backend_always_retry": True,
    "result_backend_max_retries": 1_000_000,
    # A worker takes a run from Redis only when it has a free process. With prefetching (even at multiplier
    # 1, since a run is acknowledged when it starts), a busy worker reserves the next run while an idle one
    # waits: measured, the 4th shard of a day started 75 s late on 4 workers (docs/scaling.md).
    "worker_disable_prefetch": True,
}
