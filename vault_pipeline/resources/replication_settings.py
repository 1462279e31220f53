"""Tunables of the copy path as a resource, so a run's settings are visible (no secrets here)."""

from __future__ import annotations

from dagster import ConfigurableResource

from vault_pipeline.replication.copier import CopyOptions
from vault_pipeline.replication.engine import EngineSettings
from vault_pipeline.replication.policy import RetentionPolicy

MiB = 1024 * 1024


class ReplicationSettingsResource(ConfigurableResource):
    """Every field comes from VaultSettings (definitions.py), where the defaults are declared, once."""

    concurrency: int
    max_attempts: int
    retry_base_seconds: float
    lease_seconds: float
    multipart_threshold_mb: int
    part_size_mb: int
    part_concurrency: int
    spool_dir: str | None
    spool_max_mb: int
    delete_after_replication: bool
    retention_policy_file: str | None
    minimum_lock_days: int
    reserved_prefixes: list[str]

    def engine_settings(self) -> EngineSettings:
        return EngineSettings(
            concurrency=self.concurrency, max_attempts=self.max_attempts,
            retry_base_seconds=self.retry_base_seconds, lease_seconds=self.lease_seconds,
        )

    def copy_options(self, storage_class: str) -> CopyOptions:
        return CopyOptions(
            storage_class=storage_class, multipart_threshold=self.multipart_threshold_mb * MiB,
            part_size=self.part_size_mb * MiB, part_concurrency=self.part_concurrency,
            reserved_prefixes=tuple(self.reserved_prefixes), spool_dir=self.spool_dir,
            spool_max_bytes=self.spool_max_mb * MiB, minimum_lock_days=self.minimum_lock_days,
        )

    def retention_policy(self) -> RetentionPolicy:
        if self.retention_policy_file:
            return RetentionPolicy.from_file(self.retention_policy_file)
        return RetentionPolicy.default()


class VerificationSettingsResource(ConfigurableResource):
    """Tunables of the fixity audit and its report (from VaultSettings, where the defaults are declared)."""

    report_prefix: str
    report_retention_years: int
    period_days: int
    audit_concurrency: int
    completeness_grace_minutes: float
    price_archive_gb_month: float
    price_standard_gb_month: float
