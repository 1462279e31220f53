"""The Celery workers of `make run-cluster`: each its own process tree, spool and log, as a machine would be.

    root/workers/<name>/worker.log   what the worker printed (Celery's log, the runs' own logs)
    root/workers/<name>/spool        its VAULT_SPOOL_DIR
    root/cluster.json                Redis and the workers with their pids, for the tests and `status`

A worker is `vault-pipeline worker --name <name>@%h`, started in a process group of its own (a SIGKILL of
the group is a machine lost, which the fault tests do). It is not restarted when it dies: in production a
service manager does that (deploy/systemd), here a dead worker stays dead so its loss can be observed.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from vault_pipeline.devstack.process import ChildServer, DevStackError, start_process, stop_process, tail

WORKER_START_TIMEOUT_S = 90.0
WORKER_STOP_TIMEOUT_S = 30.0  # Celery's warm shutdown lets a running run finish; then the group is killed
CLUSTER_FILE = "cluster.json"


class CeleryWorker(ChildServer):
    def __init__(self, name: str, root: Path, env: dict[str, str], cwd: Path) -> None:
        self.name, self.dir, self.cwd = name, Path(root).resolve() / "workers" / name, cwd
        self.env = dict(env)
        self.log_path = self.dir / "worker.log"
        self.spool = self.dir / "spool"

    def start(self) -> CeleryWorker:
        self.spool.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "vault_pipeline.cli", "worker", "--name", f"{self.name}@%h"]
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.process = start_process(command, log_path=self.log_path, cwd=self.cwd,
                                     env={**self.env, "VAULT_SPOOL_DIR": str(self.spool)})
        return self

    def wait_ready(self, timeout: float = WORKER_START_TIMEOUT_S) -> None:
        """Until Celery says the worker is ready (connected to Redis, consuming its queue)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running:
                code = self.process.returncode if self.process else None
                raise DevStackError(f"Celery worker {self.name} exited (code {code}):\n{tail(self.log_path)}")
            with open(self.log_path, "rb") as log:
                log.seek(self._log_start)
                if b"vault-pipeline worker" in log.read():  # cluster/worker.py's line on Celery's worker_ready
                    return
            time.sleep(0.3)
        raise DevStackError(f"Celery worker {self.name} not ready within {timeout:.0f} s:\n{tail(self.log_path)}")

    def stop(self) -> None:
        stop_process(self.process, stop_signal=signal.SIGTERM, timeout=WORKER_STOP_TIMEOUT_S)
        self.process = None

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "pid": self.pid, "log": str(self.log_path), "spool": str(self.spool)}


def write_cluster_file(root: Path, redis: dict[str, object], workers: list[CeleryWorker]) -> None:
    path = Path(root).resolve() / CLUSTER_FILE
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps({"redis": redis, "workers": [w.describe() for w in workers]}, indent=2) + "\n")
    partial.replace(path)


def read_cluster_file(root: Path) -> dict[str, object]:
    path = Path(root).resolve() / CLUSTER_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DevStackError(f"no cluster under {path.parent} ({exc}): start it with `make run-cluster`") from exc
