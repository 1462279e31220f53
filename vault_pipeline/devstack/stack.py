"""The embedded stack of `make run`: PostgreSQL, a hot site and a cold site, with all data under one root.

    root/postgres        PostgreSQL data (databases `vault` for tracking, `dagster` for Dagster's storage,
                         `vault_secondary` as the target of rebuild_tracking_db: a secondary site's database)
    root/journal-signing.key   the dev stack's Ed25519 seal signing key (generated once, mode 0600)
    root/postgres.log
    root/hot, root/cold  SeaweedFS data, each with its weed.log (cold-moto.log for the moto flavour)
    root/sftp            the SFTP server's directory (inbox/ in it), root/sftp-keys its keys (see sftp.py)
    root/stack.json      settings of the running stack, for `vault-pipeline stack env` in other shells

The credentials below are fixed on purpose: they protect nothing but a throwaway local stack bound to
127.0.0.1, and fixed values let a developer reuse a shell across restarts. Production settings come from
the environment (README.md, "Configuration").
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import psutil

from vault_pipeline.devstack.buckets import ensure_bucket
from vault_pipeline.devstack.motosite import MotoSite
from vault_pipeline.devstack.ports import COLD_S3_PORT, HOT_S3_PORT, LOOPBACK, POSTGRES_PORT, find_free_port_block
from vault_pipeline.devstack.postgres import EmbeddedPostgres, pg_bin_dir, pgserver_binary
from vault_pipeline.devstack.process import DevStackError
from vault_pipeline.devstack.seaweed import SeaweedSite
from vault_pipeline.devstack.sftp import SftpServer
from vault_pipeline.devstack.site import REGION

HOT_CREDENTIALS = ("vault-hot-admin", "vault-hot-secret")  # local throwaway stack only, see above
COLD_CREDENTIALS = ("vault-cold-admin", "vault-cold-secret")  # local throwaway stack only, see above
TRACKING_DATABASE = "vault"
DAGSTER_DATABASE = "dagster"
SECONDARY_DATABASE = "vault_secondary"
SIGNING_KEY_FILE = "journal-signing.key"
STATE_FILE = "stack.json"
ColdFlavour = Literal["seaweedfs", "moto"]


@dataclass(frozen=True)
class StackConfig:
    pg_port: int = POSTGRES_PORT
    hot_port: int = HOT_S3_PORT
    cold_port: int = COLD_S3_PORT
    # None: a free port, found at start-up (tests and benchmarks); `make run` passes the fixed SFTP_PORT.
    sftp_port: int | None = None
    cold_flavour: ColdFlavour = "seaweedfs"
    hot_bucket: str = "documents-hot"
    cold_bucket: str = "documents-cold"


class DevStack:
    """Start, stop and describe the whole stack. `DevStack(root, pg_port=..., ...)` or with a StackConfig;
    keyword arguments override the config's fields."""

    def __init__(self, root: Path, config: StackConfig | None = None, *, pg_port: int | None = None,
                 hot_port: int | None = None, cold_port: int | None = None,
                 cold_flavour: ColdFlavour | None = None, hot_bucket: str | None = None,
                 cold_bucket: str | None = None, dagster_url: str | None = None,
                 extra_env: dict[str, str] | None = None, sftp_port: int | None = None) -> None:
        overrides = {name: value for name, value in {
            "pg_port": pg_port, "hot_port": hot_port, "cold_port": cold_port, "sftp_port": sftp_port,
            "cold_flavour": cold_flavour, "hot_bucket": hot_bucket, "cold_bucket": cold_bucket}.items()
            if value is not None}
        self.config = replace(config or StackConfig(), **overrides)
        if self.config.cold_flavour not in ("seaweedfs", "moto"):
            raise ValueError(f"cold_flavour must be 'seaweedfs' or 'moto', not {self.config.cold_flavour!r}")
        self.root = Path(root).resolve()
        c = self.config
        self.postgres = EmbeddedPostgres(self.root / "postgres", c.pg_port)
        self.hot = SeaweedSite("hot", self.root / "hot", c.hot_port, *HOT_CREDENTIALS)
        self.cold: SeaweedSite | MotoSite = (
            SeaweedSite("cold", self.root / "cold", c.cold_port, *COLD_CREDENTIALS)
            if c.cold_flavour == "seaweedfs"
            else MotoSite("cold", c.cold_port, *COLD_CREDENTIALS, log_path=self.root / "cold-moto.log")
        )
        if c.sftp_port is None:
            self.config = c = replace(c, sftp_port=find_free_port_block(1))
        assert c.sftp_port is not None
        self.sftp = SftpServer(self.root, c.sftp_port)
        self.dagster_url = dagster_url  # the UI started with the stack, for the operator commands
        self.extra_env = dict(extra_env or {})  # settings of servers started beside the stack (the cluster's Redis)
        self._owns_state_file = False

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    @property
    def is_running(self) -> bool:
        return self.postgres.is_running and self.hot.is_running and self.cold.is_running and self.sftp.is_running

    def start(self, timeout: float = 60) -> DevStack:
        """Start PostgreSQL (databases `vault` and `dagster`), both sites, the hot bucket and the locked
        cold bucket, the SFTP server; then publish the settings in stack.json. On any failure, stop what was started."""
        self.root.mkdir(parents=True, exist_ok=True)
        owner = _live_owner(self.state_path)
        if owner is not None and owner != os.getpid():
            raise DevStackError(f"a stack already runs under {self.root} (process {owner}); "
                                "stop it first (Ctrl-C in its terminal) or use another directory")
        try:
            self.postgres.start(timeout)
            self.postgres.create_database(TRACKING_DATABASE)
            self.postgres.create_database(DAGSTER_DATABASE)
            self.postgres.create_database(SECONDARY_DATABASE)
            self._signing_key()
            self.hot.start(timeout)
            self.cold.start(timeout)
            ensure_bucket(self.hot.client(), self.config.hot_bucket, object_lock=False)
            ensure_bucket(self.cold.client(), self.config.cold_bucket, object_lock=True)
            self.sftp.start(timeout)
            self._write_state()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything, the SFTP server, the sites together, then PostgreSQL. Idempotent."""
        if self._owns_state_file:  # never remove the state of another process's stack
            self.state_path.unlink(missing_ok=True)
            self._owns_state_file = False
        self.sftp.stop()
        with ThreadPoolExecutor(max_workers=2) as pool:  # stopping only: never start servers from threads
            list(pool.map(lambda site: site.stop(), (self.cold, self.hot)))
        self.postgres.stop()

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """The settings the pipeline reads (README.md, "Configuration"), pointing at this stack."""
        return {
            "OVH_S3_ENDPOINT": self.hot.endpoint_url,
            "OVH_S3_REGION": REGION,
            "OVH_S3_ACCESS_KEY_ID": self.hot.access_key,
            "OVH_S3_SECRET_ACCESS_KEY": self.hot.secret_key,
            "OVH_S3_BUCKET_DOCUMENTS": self.config.hot_bucket,
            "AWS_S3_ENDPOINT": self.cold.endpoint_url,
            "AWS_S3_REGION": REGION,
            "AWS_S3_ACCESS_KEY_ID": self.cold.access_key,
            "AWS_S3_SECRET_ACCESS_KEY": self.cold.secret_key,
            "AWS_S3_BUCKET_DOCUMENTS_COLD": self.config.cold_bucket,
            "VAULT_DATABASE_URL": self.postgres.dsn(TRACKING_DATABASE),
            # A SQLAlchemy URL naming its driver: SQLAlchemy 2.1 maps bare postgresql:// to psycopg 3,
            # which dagster-postgres does not support.
            "VAULT_DAGSTER_DATABASE_URL": self.postgres.dsn(DAGSTER_DATABASE).replace(
                "postgresql://", "postgresql+psycopg2://", 1),
            "VAULT_REBUILD_DATABASE_URL": self.postgres.dsn(SECONDARY_DATABASE),
            # pg_dump / pg_restore of the backups (issue 17): the ones pgserver ships, the server's own version.
            "VAULT_PG_BIN_DIR": pg_bin_dir(),
            # The hot site's filer streams every change (issue 14): a new document is seen in seconds; the
            # hourly reconciliation sweep stays behind it. A VAULT_CHANGE_FEEDS set by the caller wins (the
            # cluster benchmark sets it empty, so that only the sweep registers).
            "VAULT_CHANGE_FEEDS": os.environ.get("VAULT_CHANGE_FEEDS", "seaweedfs-filer"),
            "VAULT_SEAWEEDFS_FILER": f"{LOOPBACK}:{self.hot.ports.filer}.{self.hot.ports.filer_grpc}",
            **self._signing_key(),
            **self.sftp.env(),
            **({"VAULT_DAGSTER_URL": self.dagster_url} if self.dagster_url else {}),
            **self.extra_env,
        }

    def _signing_key(self) -> dict[str, str]:
        """The dev stack's seal signing key, made once and kept with its data (a production key lives in a
        secret store and reaches the pipeline through the environment only)."""
        import base64

        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        path = self.root / SIGNING_KEY_FILE
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            seed = Ed25519PrivateKey.generate().private_bytes_raw()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(base64.b64encode(seed).decode() + "\n")
        seed_b64 = path.read_text().strip()
        public = Ed25519PrivateKey.from_private_bytes(base64.b64decode(seed_b64)).public_key().public_bytes_raw()
        return {"VAULT_JOURNAL_SIGNING_KEY": seed_b64, "VAULT_JOURNAL_PUBLIC_KEYS": base64.b64encode(public).decode()}

    def export_lines(self) -> str:
        return export_lines(self.env())

    def _write_state(self) -> None:
        state: dict[str, Any] = {
            "pid": os.getpid(),
            "pid_created": psutil.Process().create_time(),  # tells our pid from a later reuse of it
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "config": asdict(self.config),
            "servers": {"postgres": self.postgres.pid, "hot": self.hot.pid, "cold": self.cold.pid,
                        "sftp": self.sftp.pid},
            "env": self.env(),
        }
        partial = self.state_path.with_suffix(".json.partial")
        partial.write_text(json.dumps(state, indent=2) + "\n")
        partial.replace(self.state_path)  # atomic: a reader in another shell never sees half a file
        self._owns_state_file = True

    @staticmethod
    def load_state(root: Path) -> dict[str, Any]:
        """The stack.json of the stack running under `root`; DevStackError when none runs there."""
        path = Path(root).resolve() / STATE_FILE
        try:
            state = json.loads(path.read_text())
            pid = int(state["pid"])
            dict(state["env"])
        except FileNotFoundError as exc:
            raise DevStackError(f"no running embedded stack under {path.parent} (start it with `make run`)") from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DevStackError(f"unreadable {path}: {exc}") from exc
        if _live_owner(path) is None:
            raise DevStackError(f"the embedded stack under {path.parent} is not running (its process {pid} is gone; "
                                "start it with `make run`)")
        return state

    @staticmethod
    def load_env(root: Path) -> dict[str, str]:
        """The env() of the stack running under `root`, read from its stack.json by any process."""
        return {str(k): str(v) for k, v in DevStack.load_state(root)["env"].items()}


def _live_owner(state_path: Path) -> int | None:
    """The pid recorded in a stack.json if that process still runs; None for no file or a stale one
    (left by a runner that was killed: its servers died with it)."""
    try:
        state = json.loads(state_path.read_text())
        pid, created = int(state["pid"]), float(state.get("pid_created", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        process = psutil.Process(pid)
        alive = process.status() != psutil.STATUS_ZOMBIE and (not created or abs(process.create_time() - created) < 1)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    return pid if alive else None


def export_lines(env: Mapping[str, str]) -> str:
    """`env` as shell `export NAME='value'` lines (eval-able), then hints for the aws CLI and psql."""
    lines = [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    lines += [
        "# The aws CLI reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, not the per-site names above:",
        '# AWS_ACCESS_KEY_ID="$OVH_S3_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$OVH_S3_SECRET_ACCESS_KEY" '
        'aws --endpoint-url "$OVH_S3_ENDPOINT" s3 ls',
        '# AWS_ACCESS_KEY_ID="$AWS_S3_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_S3_SECRET_ACCESS_KEY" '
        'aws --endpoint-url "$AWS_S3_ENDPOINT" s3api list-object-versions --bucket "$AWS_S3_BUCKET_DOCUMENTS_COLD"',
        '# psql "$VAULT_DATABASE_URL"   (no psql on this machine? PostgreSQL\'s own ships with pgserver:)',
        f'# {shlex.quote(pgserver_binary("psql"))} "$VAULT_DATABASE_URL"',
    ]
    return "\n".join(lines)
