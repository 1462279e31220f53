"""The secondary site's tracking database: the target of rebuild_tracking_db and journal_tail_sensor.

Its DSN may hold a password, so it only ever arrives as EnvVar("VAULT_REBUILD_DATABASE_URL"). Unset, the
reconstruction refuses to run with a message naming the variable (rebuilding into the primary database
by accident would overwrite the live manifest with the journal's view of it).
"""

from __future__ import annotations

import os

import psycopg
from dagster import ConfigurableResource, EnvVar

from vault_pipeline.journal.chain import ChainState
from vault_pipeline.journal.rebuild import stored_position
from vault_pipeline.replication.tracking import redact_dsn
from vault_pipeline.resources.journal import REBUILD_DSN_VARIABLE


class RebuildTargetNotConfigured(RuntimeError):
    pass


class RebuildTargetResource(ConfigurableResource):
    """Target PostgreSQL of the journal replay (a secondary site's database)."""

    dsn: str | None = None

    def require_dsn(self) -> str:
        if not self.dsn:
            raise RebuildTargetNotConfigured(
                f"{REBUILD_DSN_VARIABLE} is not set: give the DSN of the database to rebuild (on the secondary "
                "site, its own tracking database)")
        return self.dsn

    def describe(self) -> str:
        return redact_dsn(self.dsn) if self.dsn else "<not configured>"

    def position(self, site: str) -> ChainState:
        """Where the replay into the target stands (seq 1 when it never ran)."""
        with psycopg.connect(self.require_dsn(), connect_timeout=10) as conn:
            exists = conn.execute("SELECT to_regclass('vault_secure.rebuild_state') IS NOT NULL").fetchone()
            if not exists or not exists[0]:
                return ChainState()
            return stored_position(conn, site)[0]


def rebuild_target_from_env() -> RebuildTargetResource:
    if os.environ.get(REBUILD_DSN_VARIABLE, "").strip():
        return RebuildTargetResource(dsn=EnvVar(REBUILD_DSN_VARIABLE))
    return RebuildTargetResource()
