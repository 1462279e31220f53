"""The tracking database's connection pool, its schema migrations and the audit log writer every
part of the store shares."""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources
from typing import Any, Self

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

MIGRATION_LOCK_ID = 0x7661756C74  # "vault": advisory lock serialising concurrent migrators


class TrackingDatabaseError(RuntimeError):
    """The tracking database cannot be used; the message never contains a password."""


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    parts.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in parts.items())


class TrackingConnection:
    """A pool of connections to the tracking database; thread-safe, one per process."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 16, connect_timeout: float = 15) -> None:
        self.dsn = dsn
        self.pool = ConnectionPool(
            dsn, min_size=min_size, max_size=max_size, open=True, kwargs={"autocommit": False},
            name="vault-tracking",
        )
        try:
            self.pool.wait(timeout=connect_timeout)
        except PoolTimeout:
            self.pool.close()
            raise TrackingDatabaseError(
                f"tracking database {redact_dsn(dsn)} unreachable after {connect_timeout:.0f}s "
                "(check VAULT_DATABASE_URL and that the server runs)") from None

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def migrate(self, *, through: str | None = None) -> list[str]:
        """Apply the packaged SQL migrations not yet applied, in order, up to and including `through`
        (a file name such as "007_restore_audit.sql"; all by default); safe to call from many processes."""
        applied_now: list[str] = []
        scripts = sorted(
            (p for p in resources.files("vault_pipeline").joinpath("sql").iterdir() if p.name.endswith(".sql")),
            key=lambda p: p.name,
        )
        if through is not None:
            if through not in {p.name for p in scripts}:
                raise ValueError(f"no migration named {through!r}")
            scripts = [p for p in scripts if p.name <= through]
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
            conn.execute("CREATE SCHEMA IF NOT EXISTS vault_secure")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS vault_secure.schema_migrations ("
                " version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM vault_secure.schema_migrations")}
            for script in scripts:
                if script.name in done:
                    continue
                conn.execute(script.read_text("utf-8"))
                conn.execute("INSERT INTO vault_secure.schema_migrations (version) VALUES (%s)", (script.name,))
                applied_now.append(script.name)
        return applied_now

    def db_now(self) -> dt.datetime:
        with self.pool.connection() as conn:
            return conn.execute("SELECT now()").fetchone()[0]

    def _audit(
        self, conn: psycopg.Connection, event: str, key: str, run_id: str | None, details: dict[str, Any], *,
        bucket: str,
    ) -> None:
        conn.execute(
            "INSERT INTO vault_secure.audit_logs (event_type, object_key, source_bucket, run_id, metadata)"
            " VALUES (%s, %s, %s, %s, %s)",
            (event, key, bucket, run_id, json.dumps(details)),
        )
