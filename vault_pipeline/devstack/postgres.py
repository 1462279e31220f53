"""Embedded PostgreSQL 16 from the `pgserver` package, listening on 127.0.0.1:PORT.

pgserver's own `get_server` listens on a Unix socket only and starts the server with `pg_ctl`, which
detaches it: it would outlive a crashed test session or runner and keep the port and data dir. We reuse
pgserver's binaries and its helpers for running as root (PostgreSQL refuses to run as root, so, like
pgserver, we run it as a system user `pgserver`), and run the postmaster ourselves as a child process
(see process.py: own process group, dies with us) with a TCP port, so any shell, psql or DSN can reach
it. Stopping sends SIGINT, which is exactly `pg_ctl -m fast stop`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from vault_pipeline.devstack.ports import LOOPBACK
from vault_pipeline.devstack.process import (
    ChildServer,
    DevStackError,
    end_group,
    start_process,
    stop_process,
    tail,
    wait_until,
)

SUPERUSER = "postgres"
SYSTEM_USER = "pgserver"  # pgserver's convention when running as root


def pgserver_binary(name: str) -> str:
    """Path of a PostgreSQL program shipped by pgserver (postgres, initdb, psql, pg_dump, ...)."""
    from pgserver._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)



def pg_bin_dir() -> str:
    """The directory of the PostgreSQL programs pgserver ships (VAULT_PG_BIN_DIR under `make run`)."""
    return str(Path(pgserver_binary("pg_dump")).parent)


def _system_user() -> str | None:
    """None when we are not root; else make sure the `pgserver` user exists and can run the binaries."""
    if os.geteuid() != 0:
        return None
    from pgserver._commands import POSTGRES_BIN_PATH
    from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, read | execute)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
    return SYSTEM_USER


def _give_to(user: str | None, path: Path) -> None:
    """Let `user` traverse the parents of `path` (o+rx, as pgserver does) and own `path` itself."""
    if user is None:
        return
    from pgserver.utils import ensure_prefix_permissions

    entry = pwd.getpwnam(user)
    ensure_prefix_permissions(path)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _is_live_postmaster_of(pid: int, data_dir: Path) -> bool:
    """Whether `pid` is a running postmaster of `data_dir`: its working directory is its data dir. A bare
    "does the pid exist" test is wrong after a crash, when the pid may belong to an unrelated process."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        try:
            return Path(process.cwd()).resolve() == data_dir
        except psutil.AccessDenied:  # not root: be conservative
            return "postgres" in process.name()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False


class EmbeddedPostgres(ChildServer):
    def __init__(self, data_dir: Path, port: int, log_path: Path | None = None,
                 settings: Mapping[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.settings = dict(settings or {})  # extra server settings, passed as `-c name=value`
        self.log_path = Path(log_path).resolve() if log_path else self.data_dir.parent / f"{self.data_dir.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._socket_dir: Path | None = None

    def dsn(self, database: str = "postgres") -> str:
        """A libpq URL over TCP (trust authentication on loopback: no password)."""
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.port}/{database}"

    def _initdb(self, user: str | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _give_to(user, self.data_dir)
        result = subprocess.run(
            [pgserver_binary("initdb"), "-D", str(self.data_dir), "--auth=trust", "--auth-local=trust",
             "--encoding=UTF8", "--locale=C", "-U", SUPERUSER],
            user=user, cwd=self.data_dir, capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise DevStackError(f"initdb of {self.data_dir} failed: {result.stderr.strip()[-2000:]}")

    def _clear_stale_lock(self) -> None:
        """A killed server leaves postmaster.pid behind. PostgreSQL ignores it only when its pid is gone; a
        pid reused by another process makes it refuse to start, so we decide ourselves and remove it."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except FileNotFoundError:
            return
        except (OSError, ValueError, IndexError):
            pid = -1
        if pid > 0 and _is_live_postmaster_of(pid, self.data_dir):
            raise DevStackError(f"a PostgreSQL server (pid {pid}) already runs on {self.data_dir}")
        if pid > 0 and not _pid_alive(pid):  # a live pid here is an unrelated process that reused it
            # Backends of a killed postmaster that we started still share its process group (and its shared
            # memory) for a moment; a new postmaster refuses to start while they hold it.
            end_group(pid, timeout=10.0)
        pid_file.unlink(missing_ok=True)

    def start(self, timeout: float = 60) -> EmbeddedPostgres:
        """initdb on first use, then start and wait until it accepts connections. Idempotent."""
        if self.is_running:
            return self
        self.stop()  # reaps a crashed previous process and cleans its leftovers
        user = _system_user()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(user)
        self._clear_stale_lock()
        self._socket_dir = Path(tempfile.mkdtemp(prefix="vault-pg-"))  # short: socket paths max ~100 bytes
        _give_to(user, self._socket_dir)
        self.process = start_process(
            [pgserver_binary("postgres"), "-D", str(self.data_dir), "-h", LOOPBACK, "-p", str(self.port),
             "-k", str(self._socket_dir), "-c", "max_connections=300",
             *(arg for name, value in self.settings.items() for arg in ("-c", f"{name}={value}"))],
            log_path=self.log_path, cwd=self.data_dir, user=user, death_signal=signal.SIGINT,
        )
        try:
            wait_until(lambda: psycopg.connect(self.dsn(), connect_timeout=2).close(), timeout=timeout,
                       process=self.process, what=f"PostgreSQL on {LOOPBACK}:{self.port} ({self.data_dir})",
                       log_path=self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster: clients are disconnected, data is flushed). Idempotent."""
        stop_process(self.process, stop_signal=signal.SIGINT, timeout=30, whole_group=False)
        self.process = None
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def create_database(self, name: str, exist_ok: bool = True) -> None:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists and not exist_ok:
                raise DevStackError(f"database {name!r} already exists")
            if not exists:
                try:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                except psycopg.errors.DuplicateDatabase:
                    if not exist_ok:
                        raise

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_path, lines)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres({self.data_dir}, port={self.port}, running={self.is_running})"
