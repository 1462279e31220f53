"""tracking_db_backup_job and its daily schedule (VAULT_DB_BACKUP_CRON, UTC), RUNNING by default."""

from dagster import AssetSelection, DefaultScheduleStatus, ScheduleDefinition, define_asset_job

from vault_pipeline.assets.backup import tracking_db_backup

tracking_db_backup_job = define_asset_job(
    name="tracking_db_backup_job",
    selection=AssetSelection.assets(tracking_db_backup),
    description="pg_dump of the tracking database and Dagster's to the cold site (docs/backups.md).",
    tags={"vault/kind": "db-backup"},
)


def build_db_backup_schedule(cron: str) -> ScheduleDefinition:
    return ScheduleDefinition(
        name="tracking_db_backup_schedule", job=tracking_db_backup_job, cron_schedule=cron,
        execution_timezone="UTC", default_status=DefaultScheduleStatus.RUNNING,
        description="Backs up the tracking database (and Dagster's) to the cold site every day.")
