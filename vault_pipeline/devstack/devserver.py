"""`vault-pipeline dev` in a child process on free loopback ports, its data in a temporary directory.

The child (`python -m vault_pipeline.devstack.run_dev`) runs the CLI's own `run_stack_forever`:
PostgreSQL, both SeaweedFS sites, the SFTP server, and `dagster dev`
with the repository's dagster.yaml copied into ROOT/dagster_home, sensors running by default. Its output
(the stack's banner, Dagster's logs) goes to the log path given. Stopping sends it SIGINT, the Ctrl-C of
`make run`, which stops Dagster, then the sites, then PostgreSQL; if it does not finish in time its process
group is killed and its servers, which carry a parent-death signal, follow.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vault_pipeline.dagster_api import DagsterApi, DagsterApiError
from vault_pipeline.devstack.ports import LOOPBACK, SITE_PORT_BLOCK, find_free_port_block
from vault_pipeline.devstack.process import DevStackError, start_process, stop_process, tail
from vault_pipeline.devstack.stack import DevStack
from vault_pipeline.devstack.workers import read_cluster_file

REPO_ROOT = Path(__file__).resolve().parents[2]
START_ATTEMPTS = 3
STACK_TIMEOUT_S = 120.0  # PostgreSQL and both sites up (stack.json written)
DAGSTER_TIMEOUT_S = 240.0  # webserver answering, code location loaded, first sensor tick done (2 busy cores)
STOP_TIMEOUT_S = 120.0  # Dagster's own 20 s, then the sites and PostgreSQL


def free_ports(redis: bool = False) -> dict[str, int]:
    """PostgreSQL, the two SeaweedFS blocks, the Dagster UI, the SFTP server (and Redis): free now, none
    overlapping another."""
    while True:
        ports = {"pg": find_free_port_block(1), "hot": find_free_port_block(SITE_PORT_BLOCK),
                 "cold": find_free_port_block(SITE_PORT_BLOCK), "ui": find_free_port_block(1),
                 "sftp": find_free_port_block(1), **({"redis": find_free_port_block(1)} if redis else {})}
        taken = [*range(ports["hot"], ports["hot"] + SITE_PORT_BLOCK),
                 *range(ports["cold"], ports["cold"] + SITE_PORT_BLOCK), ports["pg"], ports["ui"], ports["sftp"],
                 *([ports["redis"]] if redis else [])]
        if len(set(taken)) == len(taken):
            return ports


class DevServer:
    def __init__(self, root: Path, log_path: Path, extra_env: dict[str, str] | None = None, workers: int = 0) -> None:
        """`workers` > 0: the cluster of `make run-cluster` (Redis and that many Celery workers)."""
        self.root, self.log_path, self.extra_env = root, log_path, dict(extra_env or {})
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.env: dict[str, str] = {}

    @property
    def ui_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['ui']}"

    def start(self) -> DevServer:
        """Start on free ports (new ones if a server could not bind), wait for the stack's settings."""
        for attempt in range(1, START_ATTEMPTS + 1):
            self.ports = free_ports(redis=self.workers > 0)
            command = [sys.executable, "-m", "vault_pipeline.devstack.run_dev", str(self.root),
                       *(arg for name, port in self.ports.items() for arg in (f"--{name}-port", str(port))),
                       *(["--workers", str(self.workers)] if self.workers else [])]
            # From the main thread: the child's parent-death signal fires when the forking thread ends.
            self.process = start_process(command, log_path=self.log_path, env=self.extra_env, cwd=REPO_ROOT)
            try:
                self.env = self._wait_for_stack()
                return self
            except DevStackError:
                self.stop()
                if attempt == START_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _wait_for_stack(self) -> dict[str, str]:
        deadline = time.monotonic() + STACK_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_alive("the embedded stack")
            try:
                return DevStack.load_env(self.root)
            except DevStackError:
                time.sleep(0.5)
        raise DevStackError(f"the embedded stack did not start within {STACK_TIMEOUT_S:.0f} s:\n"
                            f"{tail(self.log_path)}")

    def wait_for_cluster(self, timeout: float = DAGSTER_TIMEOUT_S) -> dict[str, Any]:
        """The cluster's Redis and workers (cluster.json), once every worker is ready."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive("the cluster")
            try:
                return read_cluster_file(self.root)
            except DevStackError:
                if time.monotonic() > deadline:
                    raise DevStackError(f"the cluster's workers not ready within {timeout:.0f} s:\n"
                                        f"{tail(self.log_path)}") from None
                time.sleep(0.5)

    def wait_for_sensor(self, api: DagsterApi, sensor: str) -> dict[str, object]:
        """Wait until the webserver answers, the sensor is RUNNING and has finished one tick (the daemon
        and the code location are up); return its state."""
        deadline = time.monotonic() + DAGSTER_TIMEOUT_S
        last_error = "no answer"
        while time.monotonic() < deadline:
            self._check_alive("dagster dev")
            try:
                state = api.sensor(sensor, tick_limit=5)
                if state["status"] == "RUNNING" and any(t["endTimestamp"] for t in state["ticks"]):
                    return state
                last_error = f"sensor {state['status']}, {len(state['ticks'])} tick(s)"
            except DagsterApiError as exc:
                last_error = str(exc)
            time.sleep(1.0)
        raise DevStackError(f"dagster dev not ready within {DAGSTER_TIMEOUT_S:.0f} s ({last_error}):\n"
                            f"{tail(self.log_path)}")

    def _check_alive(self, what: str) -> None:
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            raise DevStackError(f"{what}: `vault-pipeline dev` exited (code {code}):\n{tail(self.log_path)}")

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> bool:
        """Ctrl-C for the runner only (it stops its servers in order). False if it had to be killed."""
        graceful = stop_process(self.process, stop_signal=signal.SIGINT, timeout=STOP_TIMEOUT_S, whole_group=False)
        self.process = None
        return graceful
