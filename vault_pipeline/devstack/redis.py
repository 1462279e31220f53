"""Redis for the cluster of `make run-cluster` and the tests: Debian's `redis-server` (Redis 7), on loopback.

It is both the Celery broker (database 0: the queue of launched runs) and the result backend (database 1:
each run's task state, read by run monitoring), persisted with an append-only file fsynced on every write, so a
run launched just before a Redis stop is still queued when it comes back. `.ci/ensure-redis` installs the
package through apt when missing (the PyPI "redis-server" wheel is from 2020). The dev stack's Redis has no
password: it is bound to 127.0.0.1 and holds nothing secret; production Redis needs one (docs/deployment.md).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
from pathlib import Path

from vault_pipeline.devstack.ports import LOOPBACK
from vault_pipeline.devstack.process import ChildServer, DevStackError, start_process, stop_process, wait_until

REDIS_SERVER_ENV = "VAULT_REDIS_SERVER"
BROKER_DB, BACKEND_DB = 0, 1


def redis_server_binary() -> str:
    """VAULT_REDIS_SERVER, else `redis-server` on PATH (Debian's package); DevStackError naming the fix."""
    explicit = os.environ.get(REDIS_SERVER_ENV, "").strip()
    found = explicit or shutil.which("redis-server") or ("/usr/bin/redis-server"
                                                         if Path("/usr/bin/redis-server").exists() else None)
    if not found or not Path(found).exists():
        raise DevStackError("redis-server not found: the cluster needs Debian's redis-server package "
                            "(`bash .ci/ensure-redis` installs it through apt; `make run-cluster` runs it) or "
                            f"{REDIS_SERVER_ENV}=/path/to/redis-server")
    return found


def ping(port: int, timeout: float = 1.0) -> None:
    """One PING with the Redis protocol's inline form; raises unless +PONG comes back."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as conn:
        conn.sendall(b"PING\r\n")
        reply = conn.recv(64)
    if not reply.startswith(b"+PONG"):
        raise ConnectionError(f"unexpected reply to PING: {reply!r}")


class RedisServer(ChildServer):
    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir, self.port = Path(data_dir).resolve(), port
        self.log_path = self.data_dir / "redis.log"

    def url(self, db: int) -> str:
        return f"redis://{LOOPBACK}:{self.port}/{db}"

    def env(self) -> dict[str, str]:
        return {"VAULT_CELERY_BROKER_URL": self.url(BROKER_DB), "VAULT_CELERY_RESULT_BACKEND": self.url(BACKEND_DB)}

    def command(self) -> list[str]:
        return [redis_server_binary(), "--port", str(self.port), "--bind", LOOPBACK, "--protected-mode", "yes",
                "--dir", str(self.data_dir), "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--daemonize", "no", "--logfile", "", "--databases", "4"]

    def start(self, timeout: float = 30) -> RedisServer:
        if self.is_running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = start_process(self.command(), log_path=self.log_path, cwd=self.data_dir)
        wait_until(lambda: ping(self.port), timeout=timeout, process=self.process, what="redis-server",
                   log_path=self.log_path)
        return self

    def stop(self) -> None:
        """SIGTERM: Redis flushes its append-only file and exits."""
        stop_process(self.process, stop_signal=signal.SIGTERM, timeout=15)
        self.process = None

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, pid={self.pid})"
