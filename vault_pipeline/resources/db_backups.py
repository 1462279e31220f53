"""Tracking-database backups and restores as a Dagster resource (issue 17, docs/backups.md).

The DSNs may hold passwords, so they only ever arrive as EnvVar: Dagster's database
(VAULT_DAGSTER_DATABASE_URL, backed up beside the tracking database when set) and the restore target
(VAULT_RESTORE_DATABASE_URL; unset, a restore of the tracking database rebuilds VAULT_DATABASE_URL's).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from dagster import ConfigurableResource, EnvVar

from vault_pipeline.backup.pg_tools import dsn_params, normalized_dsn, with_database
from vault_pipeline.backup.store import BackupStore
from vault_pipeline.resources.s3_sites import ColdSiteResource

DAGSTER_DSN_VARIABLE = "VAULT_DAGSTER_DATABASE_URL"
RESTORE_DSN_VARIABLE = "VAULT_RESTORE_DATABASE_URL"
MiB = 1024 * 1024


class RestoreTargetMissing(RuntimeError):
    pass


def database_name(dsn: str) -> str:
    return str(dsn_params(dsn).get("dbname") or "")


class DatabaseBackupResource(ConfigurableResource):
    prefix: str
    retention_days: int
    restore_jobs: int
    pg_bin_dir: str = ""
    spool_dir: str | None = None
    part_size_mb: int = 64
    dagster_dsn: str | None = None  # EnvVar(VAULT_DAGSTER_DATABASE_URL) when set
    restore_dsn: str | None = None  # EnvVar(VAULT_RESTORE_DATABASE_URL) when set
    drill_database: str = "vault_restore_drill"

    def store(self, cold_site: ColdSiteResource) -> BackupStore:
        return BackupStore(cold_site.client(), cold_site.bucket, self.prefix, part_size=self.part_size_mb * MiB)

    def bin_dir(self) -> str | None:
        return self.pg_bin_dir or None

    def spool(self, *parts: str) -> Path:
        root = Path(self.spool_dir) if self.spool_dir else Path(tempfile.gettempdir())
        path = root.joinpath("vault-db-backups", *parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def databases(self, tracking_dsn: str) -> dict[str, str]:
        """What a backup dumps: the tracking database, and Dagster's when its URL is set."""
        found = {"tracking": tracking_dsn}
        if self.dagster_dsn:
            found["dagster"] = normalized_dsn(self.dagster_dsn)
        return found

    def restore_target(self, database: str, tracking_dsn: str) -> str:
        if self.restore_dsn:
            return normalized_dsn(self.restore_dsn)
        if database == "tracking":
            return tracking_dsn
        raise RestoreTargetMissing(
            f"restoring the {database} database needs {RESTORE_DSN_VARIABLE} (the database to rebuild): it is "
            "never restored over a live database by default")

    def drill_target(self, tracking_dsn: str) -> str:
        return with_database(tracking_dsn, self.drill_database)


def db_backup_resource_from_env(
    *, prefix: str, retention_days: int, restore_jobs: int, pg_bin_dir: str, spool_dir: str | None,
    part_size_mb: int, drill_database: str,
) -> DatabaseBackupResource:
    def secret(name: str) -> EnvVar | None:
        return EnvVar(name) if os.environ.get(name, "").strip() else None

    return DatabaseBackupResource(
        prefix=prefix, retention_days=retention_days, restore_jobs=restore_jobs, pg_bin_dir=pg_bin_dir,
        spool_dir=spool_dir, part_size_mb=part_size_mb, dagster_dsn=secret(DAGSTER_DSN_VARIABLE),
        restore_dsn=secret(RESTORE_DSN_VARIABLE), drill_database=drill_database)
