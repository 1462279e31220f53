"""Everything wired in one place. Configuration is read and validated here, at load time, so a bad
variable or retention policy stops `dagster dev` with a message naming it instead of failing runs."""

from __future__ import annotations

import os

from dagster import Definitions, EnvVar, ExecutorDefinition, in_process_executor

from vault_pipeline.assets.backup import tracking_db_backup
from vault_pipeline.assets.intake import hot_bucket_sweep
from vault_pipeline.assets.journal import journal_seal
from vault_pipeline.assets.replication import cold_copies, hot_deletions, hot_inventory
from vault_pipeline.assets.secondary_site import rebuilt_tracking_db
from vault_pipeline.assets.sftp import sftp_transfers
from vault_pipeline.assets.verification import verification_report
from vault_pipeline.checks.cold_copies import cold_copies_checks
from vault_pipeline.checks.sftp_transfers import sftp_transfers_checks
from vault_pipeline.jobs.backup import build_db_backup_schedule, tracking_db_backup_job
from vault_pipeline.jobs.intake import build_reconciliation_sweep_schedule, reconciliation_sweep_job
from vault_pipeline.jobs.journal_seal import build_journal_seal_schedule, journal_seal_job
from vault_pipeline.jobs.rebuild import rebuild_tracking_db_job
from vault_pipeline.jobs.replication import replication_job
from vault_pipeline.jobs.restore_drill import build_restore_drill_schedule, restore_drill_job
from vault_pipeline.jobs.restore_tracking_db import (
    build_db_restore_drill_schedule,
    db_restore_drill_job,
    restore_tracking_db_job,
)
from vault_pipeline.jobs.sftp import sftp_transfer_job
from vault_pipeline.jobs.verification import build_verification_schedules, cold_copies_checks_job, verification_job
from vault_pipeline.replication.policy import RetentionPolicy
from vault_pipeline.replication.run_plan import RetryPolicy
from vault_pipeline.replication.shards import ShardPolicy
from vault_pipeline.resources import (
    ColdSiteResource,
    ReplicationSettingsResource,
    S3SiteResource,
    TrackingDatabaseResource,
    VerificationSettingsResource,
)
from vault_pipeline.resources.alerts import alerts_resource_from_env
from vault_pipeline.resources.completion_webhooks import completion_webhooks_configured, completion_webhooks_from_env
from vault_pipeline.resources.db_backups import db_backup_resource_from_env
from vault_pipeline.resources.intake_settings import IntakeSettingsResource
from vault_pipeline.resources.journal import journal_resource_from_env
from vault_pipeline.resources.rebuild_target import rebuild_target_from_env
from vault_pipeline.resources.restore_drill import RestoreDrillResource
from vault_pipeline.resources.sftp_inbox import SftpInboxResource
from vault_pipeline.sensors.alerts import build_alert_sensors, declared_check_keys
from vault_pipeline.sensors.completion import build_completion_sensors
from vault_pipeline.sensors.hot_bucket import build_hot_bucket_sensor
from vault_pipeline.sensors.journal_tail import build_journal_tail_sensor
from vault_pipeline.sensors.restore_drill import build_restore_drill_followup_sensor
from vault_pipeline.sensors.sftp_inbox import build_sftp_inbox_sensor
from vault_pipeline.settings import VaultSettings, load_settings


def optional_secret(name: str) -> EnvVar | str:
    """An optional secret: read from the environment by Dagster (EnvVar) when set, so that the UI shows
    only its name; empty when unset (a site without keys signs with the AWS credential chain: instance or
    container role, profile, AWS_ACCESS_KEY_ID...)."""
    return EnvVar(name) if os.environ.get(name) else ""


def feed_resources(settings: VaultSettings) -> dict[str, object]:
    """The resources of the change feeds VAULT_CHANGE_FEEDS enables (and only those: a feed that is not used
    needs no configuration)."""
    resources: dict[str, object] = {}
    if "seaweedfs-filer" in settings.feeds:
        from vault_pipeline.resources.seaweedfs_filer import SeaweedFilerResource

        resources["seaweedfs_filer"] = SeaweedFilerResource(
            address=settings.seaweedfs_filer, buckets_path=settings.seaweedfs_buckets_path)
    if "sqs" in settings.feeds:
        from vault_pipeline.resources.sqs_queue import SqsQueueResource

        resources["sqs_queue"] = SqsQueueResource(
            queue_url=settings.sqs_queue_url, endpoint_url=settings.sqs_endpoint,
            region=settings.sqs_region or settings.hot_region,
            access_key_id=optional_secret("VAULT_SQS_ACCESS_KEY_ID"),
            secret_access_key=optional_secret("VAULT_SQS_SECRET_ACCESS_KEY"),
            session_token=optional_secret("VAULT_SQS_SESSION_TOKEN"))
    if "app-table" in settings.feeds:
        from vault_pipeline.resources.application_db import ApplicationDatabaseResource

        resources["application_db"] = ApplicationDatabaseResource(
            dsn=EnvVar("VAULT_APP_DATABASE_URL"), tracking_dsn=EnvVar("VAULT_DATABASE_URL"),
            table=settings.app_documents_table, query=settings.app_documents_query,
            key_column=settings.app_key_column, cursor_columns=settings.app_cursor_columns,
            document_id_column=settings.app_document_id_column, user_id_column=settings.app_user_id_column,
            document_type_column=settings.app_document_type_column)
    return resources


def sftp_resource(settings: VaultSettings) -> SftpInboxResource:
    """The SFTP inbox (issue 16); every field empty or default when SFTP_HOST is unset (the intake then stays
    off: its sensor is stopped and a run of its job fails saying what to set)."""
    return SftpInboxResource(
        host=settings.sftp_host.strip(), port=settings.sftp_port, username=settings.sftp_username,
        private_key_file=str(settings.sftp_private_key_file or ""), password=optional_secret("SFTP_PASSWORD"),
        passphrase=optional_secret("SFTP_PRIVATE_KEY_PASSPHRASE"),
        known_hosts=settings.sftp_known_hosts, remote_dir=settings.sftp_remote_dir, hot_prefix=settings.sftp_hot_prefix,
        max_workers=settings.sftp_max_workers, stale_lock_minutes=settings.sftp_stale_lock_minutes,
        after_transfer=settings.sftp_after_transfer, processed_dir=settings.sftp_processed_dir,
        document_types=settings.sftp_document_types, default_document_type=settings.sftp_default_document_type,
        stable_seconds=settings.sftp_stable_seconds, ignore_patterns=settings.sftp_ignore_patterns,
        max_attempts=settings.sftp_max_attempts, retry_after_seconds=settings.sftp_retry_after_seconds,
        connect_timeout=settings.sftp_connect_timeout_seconds, multipart_threshold_mb=settings.multipart_threshold_mb,
        part_size_mb=settings.part_size_mb, part_concurrency=settings.part_concurrency,
        spool_dir=str(settings.spool_dir) if settings.spool_dir else None, spool_max_mb=settings.spool_max_mb,
    )


def build_resources(settings: VaultSettings, policy: RetentionPolicy | None = None) -> dict[str, object]:
    policy = policy or settings.retention_policy()
    pool = max(64, settings.concurrency * (settings.part_concurrency + 1))
    return {
        "hot_site": S3SiteResource(
            site_name="hot", endpoint_url=EnvVar("OVH_S3_ENDPOINT"), region=settings.hot_region,
            access_key_id=optional_secret("OVH_S3_ACCESS_KEY_ID"),
            secret_access_key=optional_secret("OVH_S3_SECRET_ACCESS_KEY"),
            bucket=EnvVar("OVH_S3_BUCKET_DOCUMENTS"), addressing_style=settings.hot_addressing_style,
            request_checksum_calculation=settings.hot_request_checksum_calculation,
            response_checksum_validation=settings.hot_response_checksum_validation, max_pool_connections=pool,
            fast_path=settings.hot_fast_path, session_token=optional_secret("OVH_S3_SESSION_TOKEN"),
            connect_timeout=settings.s3_connect_timeout_seconds, read_timeout=settings.s3_read_timeout_seconds,
        ),
        "cold_site": ColdSiteResource(
            site_name="cold", endpoint_url=EnvVar("AWS_S3_ENDPOINT"), region=settings.cold_region,
            access_key_id=optional_secret("AWS_S3_ACCESS_KEY_ID"),
            secret_access_key=optional_secret("AWS_S3_SECRET_ACCESS_KEY"),
            bucket=EnvVar("AWS_S3_BUCKET_DOCUMENTS_COLD"), addressing_style=settings.cold_addressing_style,
            request_checksum_calculation=settings.cold_request_checksum_calculation,
            response_checksum_validation=settings.cold_response_checksum_validation, max_pool_connections=pool,
            storage_class=settings.cold_storage_class, fast_path=settings.cold_fast_path,
            session_token=optional_secret("AWS_S3_SESSION_TOKEN"),
            connect_timeout=settings.s3_connect_timeout_seconds, read_timeout=settings.s3_read_timeout_seconds,
        ),
        "tracking_db": TrackingDatabaseResource(dsn=EnvVar("VAULT_DATABASE_URL")),
        "replication": ReplicationSettingsResource(
            concurrency=settings.concurrency, max_attempts=settings.max_attempts,
            retry_base_seconds=settings.retry_base_seconds, lease_seconds=settings.lease_seconds,
            multipart_threshold_mb=settings.multipart_threshold_mb, part_size_mb=settings.part_size_mb,
            part_concurrency=settings.part_concurrency, delete_after_replication=settings.delete_after_replication,
            spool_dir=str(settings.spool_dir) if settings.spool_dir else None, spool_max_mb=settings.spool_max_mb,
            retention_policy_file=str(settings.retention_policy_file) if settings.retention_policy_file else None,
            reserved_prefixes=list(settings.reserved_prefixes), minimum_lock_days=settings.minimum_lock_days,
        ),
        "verification": VerificationSettingsResource(
            report_prefix=settings.report_prefix, report_retention_years=settings.report_retention_years,
            period_days=settings.verification_period_days, audit_concurrency=settings.audit_concurrency,
            completeness_grace_minutes=settings.completeness_grace_minutes,
            price_archive_gb_month=settings.price_archive_gb_month,
            price_standard_gb_month=settings.price_standard_gb_month,
        ),
        "alerts": alerts_resource_from_env(
            timeout_seconds=settings.alert_webhook_timeout_seconds,
            delivery_budget_seconds=settings.alert_delivery_budget_seconds,
        ),
        "journal": journal_resource_from_env(
            prefix=settings.journal_prefix, max_entries_per_segment=settings.journal_segment_entries,
            retention_years=settings.journal_retention_years or max(policy.years_by_type.values()),
            public_keys=[k.strip() for k in settings.journal_public_keys.split(",") if k.strip()],
        ),
        "intake": IntakeSettingsResource(sweep_listers=settings.sweep_listers,
                                         sweep_page_size=settings.sweep_page_size),
        **feed_resources(settings),
        "sftp_inbox": sftp_resource(settings),
        "rebuild_target": rebuild_target_from_env(),
        "db_backups": db_backup_resource_from_env(
            prefix=settings.db_backup_prefix, retention_days=settings.db_backup_retention_days,
            restore_jobs=settings.pg_restore_jobs, pg_bin_dir=settings.pg_bin_dir,
            spool_dir=str(settings.spool_dir) if settings.spool_dir else None, part_size_mb=settings.part_size_mb,
            drill_database=settings.db_restore_drill_database),
        "completion_webhooks": completion_webhooks_from_env(settings),
        "restore_drill": RestoreDrillResource(
            sample_size=settings.restore_drill_sample_size, tier=settings.restore_drill_tier,
            deadline_hours=settings.restore_drill_deadline_hours,
        ),
    }


def build_definitions(settings: VaultSettings, executor: ExecutorDefinition = in_process_executor) -> Definitions:
    """Everything, wired. `executor` is Dagster's default for every job: in-process (below); a deployment
    that wants one process per step passes `multiprocess_executor` (tested: checks/test_multiprocess_checks)."""
    hot_bucket_sensor = build_hot_bucket_sensor(
        job=replication_job,
        minimum_interval_seconds=settings.sensor_interval_seconds,
        tick_budget_seconds=settings.sensor_tick_budget_seconds,
        backlog_warning_threshold=settings.backlog_warning_threshold,
        feeds=settings.feeds, max_changes=settings.feed_max_changes,
        head_concurrency=settings.feed_head_concurrency,
        shards=ShardPolicy(min_objects=settings.shard_min_objects, max_shards=settings.max_shards),
        retry=RetryPolicy(base_seconds=settings.run_retry_base_seconds, max_seconds=settings.run_retry_max_seconds),
    )
    core = Definitions(
        assets=[hot_bucket_sweep, hot_inventory, cold_copies, hot_deletions, verification_report],
        asset_checks=cold_copies_checks,
        jobs=[reconciliation_sweep_job, replication_job, verification_job, cold_copies_checks_job, restore_drill_job],
        schedules=[build_reconciliation_sweep_schedule(settings.sweep_cron),
                   *build_verification_schedules(settings.verification_cron),
                   build_restore_drill_schedule(settings.restore_drill_cron)],
        sensors=[hot_bucket_sensor,
                 build_restore_drill_followup_sensor(settings.restore_drill_poll_minutes * 60)],
        resources=build_resources(settings),
        # In-process by default: the copy path has its own thread pool, and a process per step would only
        # add its start-up (measured: ~3 s a step here) to the delay before a document is verified.
        # Nothing depends on it: the checks compute their audit in their own step and read the copy step's
        # verification from the database (checks/cold_copies.py), so any executor or run launcher works.
        executor=executor,
    )
    # The SFTP intake (docs/sftp-intake.md): upstream of hot_inventory; its sensor runs when SFTP_HOST is set.
    sftp = Definitions(
        assets=[sftp_transfers], asset_checks=[sftp_transfers_checks], jobs=[sftp_transfer_job],
        sensors=[build_sftp_inbox_sensor(sftp_transfer_job, configured=settings.sftp_configured,
                                         minimum_interval_seconds=settings.sftp_sensor_interval_seconds,
                                         tick_budget_seconds=settings.sensor_tick_budget_seconds)])
    # The alert sensors watch every asset check the definitions above declare, so they are added last.
    alert_sensors = build_alert_sensors(
        check_keys=declared_check_keys([*(core.assets or []), *(core.asset_checks or []), sftp_transfers_checks]),
        monitored_jobs=[reconciliation_sweep_job, replication_job, verification_job, cold_copies_checks_job,
                        restore_drill_job, journal_seal_job, rebuild_tracking_db_job, sftp_transfer_job,
                        tracking_db_backup_job, restore_tracking_db_job, db_restore_drill_job],
        minimum_interval_seconds=settings.alert_sensor_interval_seconds,
    )
    # The daily journal seal (docs/journal.md).
    journal = Definitions(assets=[journal_seal], jobs=[journal_seal_job],
                          schedules=[build_journal_seal_schedule(settings.journal_seal_cron)])
    # Tracking-database backups, restores and the weekly restore drill (docs/backups.md).
    backups = Definitions(
        assets=[tracking_db_backup], jobs=[tracking_db_backup_job, restore_tracking_db_job, db_restore_drill_job],
        schedules=[build_db_backup_schedule(settings.db_backup_cron),
                   build_db_restore_drill_schedule(settings.db_restore_drill_cron)],
        # Completion notices (day replicated, backup, restore), separate from the failure alerts.
        sensors=build_completion_sensors(replication_job, configured=completion_webhooks_configured(),
                                         minimum_interval_seconds=settings.completion_sensor_interval_seconds))
    # The secondary site's reconstruction (docs/secondary-site.md): a job, and a sensor stopped by default.
    secondary = Definitions(
        assets=[rebuilt_tracking_db], jobs=[rebuild_tracking_db_job],
        sensors=[build_journal_tail_sensor(rebuild_tracking_db_job,
                                           minimum_interval_seconds=settings.rebuild_sensor_interval_seconds,
                                           lag_alert_seconds=settings.rebuild_lag_alert_seconds)])
    return Definitions.merge(core, journal, secondary, sftp, backups, Definitions(sensors=alert_sensors))


defs = build_definitions(load_settings()[0])
