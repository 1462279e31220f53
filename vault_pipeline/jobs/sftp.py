"""The SFTP transfer job sftp_inbox_sensor launches: the inbox's registered files onto the hot site, then
the checks on them. The copies to the cold site follow through hot_bucket_sensor, as for any hot object."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from vault_pipeline.assets.sftp import sftp_transfers

sftp_transfer_job = define_asset_job(
    name="sftp_transfer_job",
    selection=AssetSelection.assets(sftp_transfers) | AssetSelection.checks_for_assets(sftp_transfers),
    description="Transfer the files registered from the SFTP inbox onto the hot site.",
)
