"""Foreground runner behind `make run` / `make stack`: the stack, optionally `dagster dev`, until Ctrl-C.

Shutdown is ordered: Dagster first (its runs and daemon still write to PostgreSQL), then the S3 sites,
then PostgreSQL. The servers live in their own process groups, so a Ctrl-C typed in the terminal reaches
only this runner, which then does that in order; if the runner itself is killed, the servers receive
their parent-death signal (process.py) and stop on their own.

With `workers` > 0 (`make run-cluster`, `vault-pipeline dev --workers N`) the runs leave this machine's
daemon: Redis starts beside the stack, Dagster's instance is deploy/dagster-celery.yaml (VaultCeleryRunLauncher)
and N Celery workers (devstack/workers.py) execute the runs. Stopping then goes Dagster, workers, Redis, sites,
PostgreSQL.

Call `run_stack_forever` from the main thread: it installs signal handlers.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vault_pipeline.devstack.ports import (
    COLD_S3_PORT,
    DAGSTER_UI_PORT,
    HOT_S3_PORT,
    LOOPBACK,
    POSTGRES_PORT,
    REDIS_PORT,
    SFTP_PORT,
)
from vault_pipeline.devstack.process import DevStackError, start_process, stop_process
from vault_pipeline.devstack.redis import RedisServer
from vault_pipeline.devstack.stack import ColdFlavour, DevStack, export_lines
from vault_pipeline.devstack.workers import CeleryWorker, write_cluster_file

DAGSTER_STOP_TIMEOUT = 20.0


def banner(stack: DevStack, ui_url: str | None, redis: RedisServer | None = None,
           workers: list[CeleryWorker] | None = None) -> str:
    env = stack.env()
    rows = [
        "vault-pipeline embedded stack is up",
        *([f"  Dagster UI     {ui_url}"] if ui_url else []),
        *([f"  Redis          {redis.url(0)} (Celery broker), {redis.url(1)} (results)"] if redis else []),
        *([f"  workers        {len(workers)} Celery worker(s): " + ", ".join(w.name for w in workers)
           + f"  (logs under {stack.root / 'workers'})"] if workers else []),
        f"  hot site S3    {env['OVH_S3_ENDPOINT']}  bucket {env['OVH_S3_BUCKET_DOCUMENTS']}  "
        f"key {env['OVH_S3_ACCESS_KEY_ID']} / {env['OVH_S3_SECRET_ACCESS_KEY']}",
        f"  cold site S3   {env['AWS_S3_ENDPOINT']}  bucket {env['AWS_S3_BUCKET_DOCUMENTS_COLD']} (Object Lock, "
        f"{stack.config.cold_flavour})  key {env['AWS_S3_ACCESS_KEY_ID']} / {env['AWS_S3_SECRET_ACCESS_KEY']}",
        f"  PostgreSQL     {env['VAULT_DATABASE_URL']}  (Dagster storage: {env['VAULT_DAGSTER_DATABASE_URL']})",
        f"  SFTP           {stack.sftp.address}  key {env['SFTP_PRIVATE_KEY_FILE']}  "
        f"(inbox on disk: {stack.sftp.inbox_dir})",
        f"  data           {stack.root}",
        "  other shells:  eval \"$(.venv/bin/vault-pipeline stack env)\"",
        "  Ctrl-C stops everything.",
    ]
    return "\n".join(rows)


def prepare_dagster_home(root: Path, dagster_yaml: Path) -> Path:
    """DAGSTER_HOME under the stack root, with a fresh copy of the repo's dagster.yaml (copied on every
    start, so an edit takes effect at the next `make run`; a copy also survives moving the checkout)."""
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(dagster_yaml, home / "dagster.yaml")
    return home


def _start_dagster(stack: DevStack, dagster_yaml: Path, workspace: Path, ui_port: int) -> subprocess.Popen[bytes]:
    env = {**stack.env(), "DAGSTER_HOME": str(stack.root / "dagster_home")}
    # Same interpreter as ours: the venv's dagster even when the venv is not activated.
    command = [sys.executable, "-m", "dagster", "dev", "-w", str(workspace), "-h", LOOPBACK, "-p", str(ui_port)]
    return start_process(command, log_path=None, env=env, cwd=workspace.parent)


def run_stack_forever(root: Path, dagster: bool, *, dagster_yaml: Path | None = None,
                      workspace: Path | None = None, pg_port: int = POSTGRES_PORT, hot_port: int = HOT_S3_PORT,
                      cold_port: int = COLD_S3_PORT, ui_port: int = DAGSTER_UI_PORT,
                      cold_flavour: ColdFlavour = "seaweedfs", workers: int = 0,
                      redis_port: int = REDIS_PORT, sftp_port: int | None = SFTP_PORT) -> int:
    """Start the stack (and `dagster dev` when `dagster`, and Redis with `workers` Celery workers when
    `workers` > 0), print where everything is, wait for Ctrl-C, SIGTERM or SIGHUP, stop everything in order
    and return 0. Returns 1 when the stack cannot start, and dagster's exit code (or 1) when `dagster dev`
    exits by itself."""
    if dagster and (dagster_yaml is None or workspace is None):
        raise ValueError("dagster=True needs dagster_yaml and workspace")
    if workers and not dagster:
        raise ValueError("workers need dagster=True")
    if workers:  # the cluster's instance: the same storage and queue, runs launched on Celery
        assert dagster_yaml is not None
        dagster_yaml = dagster_yaml.parent / "deploy" / "dagster-celery.yaml"
    stopping = threading.Event()

    def request_stop(_signum: int, _frame: object) -> None:
        stopping.set()

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, request_stop) for sig in handled}
    try:
        redis = RedisServer(Path(root).resolve() / "redis", redis_port) if workers else None
        stack = DevStack(root, pg_port=pg_port, hot_port=hot_port, cold_port=cold_port, sftp_port=sftp_port,
                         cold_flavour=cold_flavour,
                         dagster_url=f"http://{LOOPBACK}:{ui_port}" if dagster else None,
                         extra_env=redis.env() if redis else None)
        try:
            if redis is not None:
                redis.start()
            stack.start()
        except DevStackError as exc:
            print(f"vault-pipeline: {exc}", file=sys.stderr)
            if redis is not None:
                redis.stop()
            return 1
        dagster_process: subprocess.Popen[bytes] | None = None
        celery_workers: list[CeleryWorker] = []
        try:
            if stopping.is_set():  # Ctrl-C while starting: the servers are up, stop them cleanly below
                return 0
            if dagster:
                assert dagster_yaml is not None and workspace is not None
                home = prepare_dagster_home(stack.root, dagster_yaml)
                dagster_process = _start_dagster(stack, dagster_yaml, workspace, ui_port)
                if workers:
                    env = {**stack.env(), "DAGSTER_HOME": str(home)}
                    celery_workers = [CeleryWorker(f"worker{n}", stack.root, env, workspace.parent).start()
                                      for n in range(1, workers + 1)]
                    try:
                        for worker in celery_workers:
                            worker.wait_ready()
                    except DevStackError as exc:
                        print(f"vault-pipeline: {exc}", file=sys.stderr)
                        return 1
                    assert redis is not None
                    write_cluster_file(stack.root, {"pid": redis.pid, "port": redis.port, "dir": str(redis.data_dir)},
                                       celery_workers)
            print(banner(stack, f"http://{LOOPBACK}:{ui_port}" if dagster else None, redis, celery_workers),
                  flush=True)
            return _wait(stopping, stack, dagster_process, redis, celery_workers)
        finally:
            print("\nstopping ...", flush=True)
            # SIGINT to dagster's whole group is what a Ctrl-C in its own terminal does: the webserver,
            # daemon and code servers shut down gracefully.
            stop_process(dagster_process, stop_signal=signal.SIGINT, timeout=DAGSTER_STOP_TIMEOUT)
            if celery_workers:  # warm shutdowns, together: each worker lets its running run finish
                with ThreadPoolExecutor(max_workers=len(celery_workers)) as pool:
                    list(pool.map(lambda worker: worker.stop(), celery_workers))
            if redis is not None:
                redis.stop()
            stack.stop()
            print("stopped.", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait(stopping: threading.Event, stack: DevStack, dagster_process: subprocess.Popen[bytes] | None,
          redis: RedisServer | None = None, workers: list[CeleryWorker] | None = None) -> int:
    told: set[str] = set()  # a dead worker or Redis is said once; the rest of the stack goes on without it
    while not stopping.wait(0.5):
        for server, name in [*((w, f"Celery worker {w.name}") for w in workers or []),
                             *([(redis, "redis-server")] if redis else [])]:
            if not server.is_running and name not in told and server.process is not None:
                told.add(name)
                print(f"vault-pipeline: {name} exited (code {server.process.returncode}); not restarted",
                      file=sys.stderr, flush=True)
        if dagster_process is not None and dagster_process.poll() is not None:
            print(f"vault-pipeline: dagster dev exited with code {dagster_process.returncode}", file=sys.stderr)
            return dagster_process.returncode or 1
        if not stack.is_running:
            print(f"vault-pipeline: a server of the stack exited; see the logs under {stack.root}", file=sys.stderr)
            return 1
    return 0


def print_env(root: Path) -> int:
    """Print the running stack's settings as export lines (0), or a one-line error (1)."""
    try:
        print(export_lines(DevStack.load_env(root)))
    except DevStackError as exc:
        print(f"vault-pipeline: {exc}", file=sys.stderr)
        return 1
    return 0
