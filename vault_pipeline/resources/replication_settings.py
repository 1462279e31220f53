"""Tunables of the copy path as a resource, so a run's settings are visible (no secrets here)."""

from __future__ import annotations

from dagster import ConfigurableResource

from vault_pipeline.replication.copier import CopyOptions
from vault_pipeline.replication.engine import EngineSettings
from vault_pipeline.replication.policy import RetentionPolicy

MiB = 1024 * 1024


class ReplicationSettingsResource(ConfigurableResource):
    concurrency: int = 8
    max_attempts: int = 3
    retry_base_seconds: float = 5.0
    lease_seconds: float = 300.0
    multipart_threshold_mb: int = 16
    part_size_mb: int = 8
    part_concurrency: int = 4
    spool_dir: str | None = None
    spool_max_mb: int = 8192
    delete_after_replication: bool = False
    retention_policy_file: str | None = None
    reserved_prefixes: list[str] = []

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
            spool_max_bytes=self.spool_max_mb * MiB,
        )

    def retention_policy(self) -> RetentionPolicy:
        if self.retention_policy_file:
            return RetentionPolicy.from_file(self.retention_policy_file)
        return RetentionPolicy.default()


class VerificationSettingsResource(ConfigurableResource):
    """Tunables of the fixity audit and its report."""

    report_prefix: str = "reports/verification/"
    report_retention_years: int = 10
    period_days: int = 30
    audit_concurrency: int = 16
    completeness_grace_minutes: float = 60
    price_archive_gb_month: float = 0.00099
    price_standard_gb_month: float = 0.023
