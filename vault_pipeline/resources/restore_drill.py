"""Tunables of the restore drill as a resource, so a run's drill settings are visible in the UI."""


import datetime as dt

from dagster import ConfigurableResource

from vault_pipeline.retrieval.drill_store import DrillSettings, Tier


class RestoreDrillResource(ConfigurableResource):
    """Defaults of every drill run (VAULT_RESTORE_DRILL_*, declared in VaultSettings); a run's config may
    override sample and tier."""

    sample_size: int
    tier: str
    deadline_hours: float

    def drill_settings(
        self, *, tier: str | None = None, restore_days: int = 7, exclude_recent_days: int = 90,
        read_concurrency: int = 4, chunk_size_mb: int = 1,
    ) -> DrillSettings:
        chosen: Tier = (tier or self.tier).capitalize()  # type: ignore[assignment]
        return DrillSettings(
            tier=chosen, restore_days=restore_days, deadline=dt.timedelta(hours=self.deadline_hours),
            exclude_recent_days=exclude_recent_days, read_concurrency=read_concurrency,
            chunk_size=chunk_size_mb * 1024 * 1024,
        )
