"""rebuild_tracking_db: materialize rebuilt_tracking_db (config: mode full | incremental, sweep_bucket)."""

from dagster import AssetSelection, define_asset_job

from vault_pipeline.assets.secondary_site import rebuilt_tracking_db

rebuild_tracking_db_job = define_asset_job(
    name="rebuild_tracking_db",
    selection=AssetSelection.assets(rebuilt_tracking_db),
    description="Rebuilds the tracking database of VAULT_REBUILD_DATABASE_URL from the cold site's journal.",
)
