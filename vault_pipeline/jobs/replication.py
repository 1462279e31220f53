"""The replication job the sensor launches: inventory, copies, then optional hot deletions."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from vault_pipeline.assets.replication import cold_copies, hot_deletions, hot_inventory

replication_job = define_asset_job(
    name="replication_job",
    # The blocking checks of cold_copies run between the copies and the deletions: a failed check stops
    # hot_deletions for the day.
    selection=AssetSelection.assets(hot_inventory, cold_copies, hot_deletions)
    | AssetSelection.checks_for_assets(cold_copies),
    description="Replicate one day of documents from the hot site to the locked cold site.",
)
