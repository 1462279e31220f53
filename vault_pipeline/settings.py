"""Tunable, non-secret settings, read from the environment and validated once at start-up.

Secrets (access keys, DSNs with passwords) are *not* here: they reach the resources as Dagster EnvVar
so that only the variable's name is ever shown in the UI. Every variable is listed in README.md.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vault_pipeline.replication.policy import PolicyError, RetentionPolicy

MiB = 1024 * 1024
STORAGE_CLASSES = (
    "STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER", "GLACIER_IR", "DEEP_ARCHIVE",
)
# Change feeds hot_bucket_sensor can read (VAULT_CHANGE_FEEDS); the reconciliation sweep always runs.
FEEDS = ("seaweedfs-filer", "sqs", "app-table")
ChecksumWhen = Literal["when_supported", "when_required"]
AddressingStyle = Literal["path", "virtual", "auto"]


class ConfigurationError(ValueError):
    """Invalid configuration; the message names each offending variable."""


def parse_document_types(text: str) -> dict[str, str]:
    """SFTP_DOCUMENT_TYPES, `dir=type,dir/sub=type`, as {directory: type}; ValueError naming a bad entry."""
    mapping: dict[str, str] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        directory, sep, document_type = entry.partition("=")
        directory, document_type = directory.strip().strip("/"), document_type.strip()
        if not sep or not directory or not document_type:
            raise ValueError(f"entry {entry!r} is not 'directory=type'")
        if directory in mapping:
            raise ValueError(f"directory {directory!r} is listed twice")
        mapping[directory] = document_type
    return mapping


class VaultSettings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", populate_by_name=True)

    hot_region: str = Field("us-east-1", alias="OVH_S3_REGION")
    hot_addressing_style: AddressingStyle = Field("path", alias="OVH_S3_ADDRESSING_STYLE")
    hot_request_checksum_calculation: ChecksumWhen = Field(
        "when_supported", alias="OVH_S3_REQUEST_CHECKSUM_CALCULATION")
    hot_response_checksum_validation: ChecksumWhen = Field(
        "when_supported", alias="OVH_S3_RESPONSE_CHECKSUM_VALIDATION")
    # The documents' requests on awscrt (replication/crt_s3.py); false: boto3 for everything. The *_LEAN_CLIENT
    # names of the urllib3 client it replaced are still read.
    hot_fast_path: bool = Field(True, validation_alias=AliasChoices("OVH_S3_FAST_PATH", "OVH_S3_LEAN_CLIENT"))
    cold_region: str = Field("us-east-1", alias="AWS_S3_REGION")
    cold_addressing_style: AddressingStyle = Field("path", alias="AWS_S3_ADDRESSING_STYLE")
    cold_request_checksum_calculation: ChecksumWhen = Field(
        "when_supported", alias="AWS_S3_REQUEST_CHECKSUM_CALCULATION")
    cold_response_checksum_validation: ChecksumWhen = Field(
        "when_supported", alias="AWS_S3_RESPONSE_CHECKSUM_VALIDATION")
    cold_fast_path: bool = Field(True, validation_alias=AliasChoices("AWS_S3_FAST_PATH", "AWS_S3_LEAN_CLIENT"))
    cold_storage_class: str = Field("DEEP_ARCHIVE", alias="VAULT_COLD_STORAGE_CLASS")
    # Both sites' S3 clients (boto3 and the fast path): seconds to connect, and seconds without a byte before
    # an attempt is given up (the fast path, whose retries are native, waits that long per attempt).
    s3_connect_timeout_seconds: float = Field(10.0, gt=0, le=300, alias="VAULT_S3_CONNECT_TIMEOUT_SECONDS")
    s3_read_timeout_seconds: float = Field(120.0, gt=0, le=3600, alias="VAULT_S3_READ_TIMEOUT_SECONDS")

    concurrency: int = Field(8, ge=1, le=256, alias="REPLICATION_CONCURRENCY")
    max_attempts: int = Field(3, ge=1, le=20, alias="VAULT_MAX_ATTEMPTS")
    retry_base_seconds: float = Field(5.0, ge=0, le=3600, alias="VAULT_RETRY_BASE_SECONDS")
    lease_seconds: float = Field(300.0, ge=5, le=86400, alias="VAULT_LEASE_SECONDS")
    multipart_threshold_mb: int = Field(16, ge=5, le=5120, alias="VAULT_MULTIPART_THRESHOLD_MB")
    part_size_mb: int = Field(8, ge=5, le=5120, alias="VAULT_PART_SIZE_MB")
    part_concurrency: int = Field(4, ge=1, le=64, alias="VAULT_PART_CONCURRENCY")
    spool_dir: Path | None = Field(None, alias="VAULT_SPOOL_DIR")
    spool_max_mb: int = Field(8192, ge=0, le=16 * 1024 * 1024, alias="VAULT_SPOOL_MAX_MB")
    delete_after_replication: bool = Field(False, alias="DELETE_FROM_OVH_AFTER_REPLICATION")
    retention_policy_file: Path | None = Field(None, alias="VAULT_RETENTION_POLICY_FILE")
    # A document whose policy date is past or nearer than this (a 1960 payslip kept 50 years) is locked until
    # now + this many days instead: S3 refuses a retain-until date in the past, and a vault never keeps a
    # copy unlocked. 180 days is Deep Archive's minimum billable duration (deleting earlier saves nothing)
    # and spans several verification periods and restore drills. At most 100 years, the S3 lock ceiling.
    minimum_lock_days: int = Field(180, ge=1, le=36500, alias="VAULT_MINIMUM_LOCK_DAYS")

    # hot_bucket_sensor reads the change feeds and requests runs; it lists nothing, so a tick is cheap and
    # can be frequent. Dagster's sensor loop wakes every 5 s and ticks a sensor whose interval has passed: an
    # interval of 5 s is often 0.1 s short at a wake and ticks every 10 s (measured), 4 ticks at every wake.
    sensor_interval_seconds: int = Field(4, ge=1, le=86400, alias="VAULT_SENSOR_INTERVAL_SECONDS")
    # Time one tick may spend reading feeds; Dagster kills a tick at 60 s, so the budget stays well below.
    sensor_tick_budget_seconds: float = Field(20.0, ge=0, le=45, alias="VAULT_SENSOR_TICK_BUDGET_SECONDS")
    backlog_warning_threshold: int = Field(1000, ge=1, alias="VAULT_BACKLOG_WARNING_THRESHOLD")
    # Shards (replication/shards.py): a day with at least VAULT_SHARD_MIN_OBJECTS rows waiting gets one run
    # per that many rows, at most VAULT_MAX_SHARDS (64 at most: replication.shards.MAX_SHARDS), from the
    # sensor and from retry-failed; the runs copy the day in parallel, on as many workers.
    shard_min_objects: int = Field(2000, ge=1, alias="VAULT_SHARD_MIN_OBJECTS")
    max_shards: int = Field(4, ge=1, le=64, alias="VAULT_MAX_SHARDS")
    # A day whose newest run failed (it died, or never started: e.g. its broker was down) and still has rows
    # waiting gets a new run from the sensor after this many seconds, doubled at each consecutive failure,
    # at most VAULT_RUN_RETRY_MAX_SECONDS (replication/run_plan.py).
    run_retry_base_seconds: float = Field(30.0, gt=0, le=86400, alias="VAULT_RUN_RETRY_BASE_SECONDS")
    run_retry_max_seconds: float = Field(3600.0, gt=0, le=7 * 86400, alias="VAULT_RUN_RETRY_MAX_SECONDS")

    # Change feeds (issue 14, docs/scaling.md): comma-separated names of FEEDS, read by hot_bucket_sensor.
    # Empty: the reconciliation sweep is the only detection (an OVH hot site has nothing else).
    change_feeds: str = Field("", alias="VAULT_CHANGE_FEEDS")
    feed_max_changes: int = Field(20_000, ge=1, le=1_000_000, alias="VAULT_FEED_MAX_CHANGES")
    feed_head_concurrency: int = Field(16, ge=1, le=256, alias="VAULT_FEED_HEAD_CONCURRENCY")
    # seaweedfs-filer: the filer of the hot SeaweedFS, "host:port" (gRPC on port + 10000) or
    # "host:port.grpcPort", and the folder its S3 buckets live in.
    seaweedfs_filer: str = Field("", alias="VAULT_SEAWEEDFS_FILER")
    seaweedfs_buckets_path: str = Field("/buckets", pattern=r"^/\S*$", alias="VAULT_SEAWEEDFS_BUCKETS_PATH")
    # sqs: the queue the hot bucket's ObjectCreated notifications go to. Credentials: VAULT_SQS_ACCESS_KEY_ID
    # and VAULT_SQS_SECRET_ACCESS_KEY (secrets, EnvVar), else the AWS credential chain.
    sqs_queue_url: str = Field("", alias="VAULT_SQS_QUEUE_URL")
    sqs_endpoint: str = Field("", alias="VAULT_SQS_ENDPOINT")  # empty: AWS's endpoint for the region
    sqs_region: str = Field("", alias="VAULT_SQS_REGION")  # empty: OVH_S3_REGION
    # app-table: the application's documents table (or a query) in its own database, VAULT_APP_DATABASE_URL
    # (a secret, EnvVar). Cursor columns: "id", or "created_at,id"; they must be unique together and grow.
    app_documents_table: str = Field("documents", alias="VAULT_APP_DOCUMENTS_TABLE")
    app_documents_query: str = Field("", alias="VAULT_APP_DOCUMENTS_QUERY")
    app_key_column: str = Field("key", alias="VAULT_APP_KEY_COLUMN")
    app_cursor_columns: str = Field("id", alias="VAULT_APP_CURSOR_COLUMNS")
    app_document_id_column: str = Field("", alias="VAULT_APP_DOCUMENT_ID_COLUMN")
    app_user_id_column: str = Field("", alias="VAULT_APP_USER_ID_COLUMN")
    app_document_type_column: str = Field("", alias="VAULT_APP_DOCUMENT_TYPE_COLUMN")

    # The reconciliation sweep (intake/sweep.py): the whole hot bucket listed in parallel key ranges, on a
    # schedule. VAULT_SENSOR_PAGE_SIZE, the name from when the sensor listed, is still read.
    sweep_cron: str = Field("0 * * * *", alias="VAULT_SWEEP_CRON")
    sweep_listers: int = Field(8, ge=1, le=64, alias="VAULT_SWEEP_LISTERS")
    sweep_page_size: int = Field(1000, ge=1, le=1000,
                                 validation_alias=AliasChoices("VAULT_SWEEP_PAGE_SIZE", "VAULT_SENSOR_PAGE_SIZE"))
    partitions_start_date: dt.date = Field(dt.date(2024, 1, 1), alias="VAULT_PARTITIONS_START_DATE")
    # Where the operator commands (status, retry-failed) reach the Dagster webserver's GraphQL API.
    dagster_url: str = Field("http://127.0.0.1:3000", pattern=r"^https?://\S+$", alias="VAULT_DAGSTER_URL")

    # Verification (issue 3): reports, rolling re-verification, cost estimate.
    report_prefix: str = Field("reports/verification/", min_length=1, alias="VAULT_REPORT_PREFIX")
    report_retention_years: int = Field(10, ge=1, le=100, alias="VAULT_REPORT_RETENTION_YEARS")
    verification_period_days: int = Field(30, ge=1, le=3650, alias="VAULT_VERIFICATION_PERIOD_DAYS")
    verification_cron: str = Field("30 2 * * *", alias="VAULT_VERIFICATION_CRON")
    audit_concurrency: int = Field(16, ge=1, le=256, alias="VAULT_AUDIT_CONCURRENCY")
    completeness_grace_minutes: float = Field(60, ge=0, le=7 * 24 * 60, alias="VAULT_COMPLETENESS_GRACE_MINUTES")
    price_archive_gb_month: float = Field(0.00099, ge=0, alias="VAULT_PRICE_ARCHIVE_GB_MONTH")
    price_standard_gb_month: float = Field(0.023, ge=0, alias="VAULT_PRICE_STANDARD_GB_MONTH")

    # Restore drill (issue 3): weekly sample restored from the cold site, read back and re-hashed.
    restore_drill_sample_size: int = Field(20, ge=0, le=100_000, alias="VAULT_RESTORE_DRILL_SAMPLE_SIZE")
    restore_drill_tier: str = Field("Bulk", alias="VAULT_RESTORE_DRILL_TIER")
    restore_drill_cron: str = Field("0 3 * * 1", alias="VAULT_RESTORE_DRILL_CRON")
    # Bulk promises 48 h; past the deadline a pending item is failed, loudly.
    restore_drill_deadline_hours: float = Field(72.0, gt=0, le=720, alias="VAULT_RESTORE_DRILL_DEADLINE_HOURS")
    restore_drill_poll_minutes: int = Field(60, ge=1, le=1440, alias="VAULT_RESTORE_DRILL_POLL_MINUTES")

    # `vault-pipeline restore` (issue 6): one document restored by an operator. Standard (12 h for Deep
    # Archive) rather than the drill's Bulk (48 h): someone is waiting for it. The restored copy is kept
    # long enough for a rerun after a timeout to find it.
    restore_tier: str = Field("Standard", alias="VAULT_RESTORE_TIER")
    restore_days: int = Field(7, ge=1, le=30, alias="VAULT_RESTORE_DAYS")

    # Alerts (issue 3). The webhook URL is a secret: it reaches the resource as EnvVar, not through here.
    alert_sensor_interval_seconds: int = Field(30, ge=5, le=3600, alias="VAULT_ALERT_SENSOR_INTERVAL_SECONDS")
    # A tick spends at most budget + 3 x timeout delivering: both bounded to stay under Dagster's 60 s.
    alert_webhook_timeout_seconds: float = Field(5.0, gt=0, le=10, alias="VAULT_ALERT_WEBHOOK_TIMEOUT_SECONDS")
    alert_delivery_budget_seconds: float = Field(15.0, ge=0, le=20, alias="VAULT_ALERT_DELIVERY_BUDGET_SECONDS")

    # Completion webhooks (issue 17): a signed notice when a day's replication, a backup or a restore completes.
    # The URLs (VAULT_COMPLETION_WEBHOOK_URLS) and the signing secret (VAULT_COMPLETION_WEBHOOK_SECRET) are
    # secrets: they reach the resource as EnvVar, not through here. A notice that fails is retried after
    # base x 2^(attempts - 1) seconds, at most the maximum, and abandoned (shown by `status`) after max attempts.
    completion_webhook_timeout_seconds: float = Field(
        5.0, gt=0, le=10, alias="VAULT_COMPLETION_WEBHOOK_TIMEOUT_SECONDS")
    completion_webhook_max_attempts: int = Field(20, ge=1, le=1000, alias="VAULT_COMPLETION_WEBHOOK_MAX_ATTEMPTS")
    completion_webhook_retry_base_seconds: float = Field(
        30.0, gt=0, le=86400, alias="VAULT_COMPLETION_WEBHOOK_RETRY_BASE_SECONDS")
    completion_webhook_retry_max_seconds: float = Field(
        3600.0, gt=0, le=7 * 86400, alias="VAULT_COMPLETION_WEBHOOK_RETRY_MAX_SECONDS")
    completion_sensor_interval_seconds: int = Field(30, ge=5, le=3600, alias="VAULT_COMPLETION_SENSOR_INTERVAL_SECONDS")

    # Write journal, seals and reconstruction (issue 4). The signing key and the rebuild target's DSN are
    # secrets: they reach the resources as EnvVar (VAULT_JOURNAL_SIGNING_KEY, VAULT_REBUILD_DATABASE_URL).
    journal_prefix: str = Field("journal/", min_length=1, alias="VAULT_JOURNAL_PREFIX")
    journal_segment_entries: int = Field(5000, ge=1, le=100_000, alias="VAULT_JOURNAL_SEGMENT_ENTRIES")
    # Unset: as long as the longest retention of the policy, so the journal outlives every document.
    journal_retention_years: int | None = Field(None, ge=1, le=100, alias="VAULT_JOURNAL_RETENTION_YEARS")
    journal_public_keys: str = Field("", alias="VAULT_JOURNAL_PUBLIC_KEYS")
    journal_seal_cron: str = Field("15 0 * * *", alias="VAULT_JOURNAL_SEAL_CRON")
    rebuild_sensor_interval_seconds: int = Field(60, ge=5, le=86400, alias="VAULT_REBUILD_SENSOR_INTERVAL_SECONDS")
    rebuild_lag_alert_seconds: float = Field(3600, gt=0, alias="VAULT_REBUILD_LAG_ALERT_SECONDS")

    # SFTP intake (issue 16, docs/sftp-intake.md): configured when SFTP_HOST is set. The password is a secret
    # (SFTP_PASSWORD, read as EnvVar by the resource); a key file is preferred. SFTP_KNOWN_HOSTS empty means
    # ~/.ssh/known_hosts; `none` turns host key checking off (never in production).
    sftp_host: str = Field("", alias="SFTP_HOST")
    sftp_port: int = Field(22, ge=1, le=65535, alias="SFTP_PORT")
    sftp_username: str = Field("", alias="SFTP_USERNAME")
    sftp_private_key_file: Path | None = Field(None, alias="SFTP_PRIVATE_KEY_FILE")
    sftp_known_hosts: str = Field("", alias="SFTP_KNOWN_HOSTS")
    sftp_remote_dir: str = Field(".", min_length=1, alias="SFTP_REMOTE_DIR")
    sftp_hot_prefix: str = Field("sftp/", alias="SFTP_HOT_PREFIX")
    sftp_max_workers: int = Field(4, ge=1, le=64, alias="SFTP_MAX_WORKERS")
    sftp_stale_lock_minutes: float = Field(30.0, gt=0, le=24 * 60, alias="SFTP_STALE_LOCK_MINUTES")
    sftp_after_transfer: Literal["move", "delete", "keep"] = Field("move", alias="SFTP_AFTER_TRANSFER")
    sftp_processed_dir: str = Field("processed", min_length=1, alias="SFTP_PROCESSED_DIR")
    # "payroll=payslip,invoices=invoice": the longest listed directory of a file's path gives its type.
    sftp_document_types: str = Field("", alias="SFTP_DOCUMENT_TYPES")
    sftp_default_document_type: str = Field("general", min_length=1, alias="SFTP_DEFAULT_DOCUMENT_TYPE")
    # A file is registered once two listings this far apart saw the same size and mtime.
    sftp_stable_seconds: float = Field(30.0, ge=0, le=86400, alias="SFTP_STABLE_SECONDS")
    sftp_ignore_patterns: str = Field(".*,*.part,*.partial,*.filepart,*.tmp", alias="SFTP_IGNORE_PATTERNS")
    sftp_max_attempts: int = Field(3, ge=1, le=20, alias="SFTP_MAX_ATTEMPTS")
    sftp_retry_after_seconds: float = Field(60.0, ge=0, le=86400, alias="SFTP_RETRY_AFTER_SECONDS")
    sftp_sensor_interval_seconds: int = Field(10, ge=1, le=86400, alias="SFTP_SENSOR_INTERVAL_SECONDS")
    sftp_connect_timeout_seconds: float = Field(15.0, gt=0, le=300, alias="SFTP_CONNECT_TIMEOUT_SECONDS")

    # Tracking-database backups and restores (issue 17, docs/backups.md). The restore target's DSN is a secret
    # (VAULT_RESTORE_DATABASE_URL, read as EnvVar); unset, a restore rebuilds VAULT_DATABASE_URL's database.
    db_backup_prefix: str = Field("backups/", min_length=1, alias="VAULT_DB_BACKUP_PREFIX")
    db_backup_retention_days: int = Field(35, ge=1, le=36_500, alias="VAULT_DB_BACKUP_RETENTION_DAYS")
    db_backup_cron: str = Field("45 1 * * *", alias="VAULT_DB_BACKUP_CRON")
    db_restore_drill_cron: str = Field("30 4 * * 0", alias="VAULT_DB_RESTORE_DRILL_CRON")
    db_restore_drill_database: str = Field("vault_restore_drill", pattern=r"^[a-z_][a-z0-9_]{0,62}$",
                                           alias="VAULT_DB_RESTORE_DRILL_DATABASE")
    pg_restore_jobs: int = Field(2, ge=1, le=64, alias="VAULT_PG_RESTORE_JOBS")
    # Where pg_dump/pg_restore are; empty: the ones pgserver ships, else PATH. Their major version must be at
    # least the server's.
    pg_bin_dir: str = Field("", alias="VAULT_PG_BIN_DIR")

    @field_validator("cold_storage_class")
    @classmethod
    def _known_class(cls, value: str) -> str:
        value = value.strip().upper()
        if value not in STORAGE_CLASSES:
            raise ValueError(f"must be one of {', '.join(STORAGE_CLASSES)}")
        return value

    @field_validator("spool_dir")
    @classmethod
    def _spool_dir_is_a_writable_directory(cls, value: Path | None) -> Path | None:
        if value is not None and not (value.is_dir() and os.access(value, os.W_OK)):
            raise ValueError(f"{value} is not a writable directory")
        return value

    @field_validator("retention_policy_file", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return None if value in ("", None) else value

    @field_validator("report_prefix", "journal_prefix", "db_backup_prefix")
    @classmethod
    def _prefix_is_a_folder(cls, value: str) -> str:
        if not value.endswith("/") or value.startswith("/"):
            raise ValueError("must be a relative key prefix ending with '/'")
        return value

    @field_validator("restore_drill_tier", "restore_tier")
    @classmethod
    def _known_tier(cls, value: str) -> str:
        tier = value.strip().capitalize()
        if tier not in ("Bulk", "Standard", "Expedited"):
            raise ValueError("must be Bulk, Standard or Expedited (Deep Archive refuses Expedited)")
        return tier

    @model_validator(mode="after")
    def _prefixes_do_not_overlap(self) -> VaultSettings:
        named = {"VAULT_REPORT_PREFIX": self.report_prefix, "VAULT_JOURNAL_PREFIX": self.journal_prefix,
                 "VAULT_DB_BACKUP_PREFIX": self.db_backup_prefix}
        for (name_a, a), (name_b, b) in itertools.combinations(named.items(), 2):
            if a.startswith(b) or b.startswith(a):
                raise ValueError(f"{name_a} {a!r} and {name_b} {b!r} overlap: the journal, the reports and the "
                                 "database backups need prefixes of their own")
        return self

    @model_validator(mode="after")
    def _retry_backoff_is_ordered(self) -> VaultSettings:
        if self.run_retry_max_seconds < self.run_retry_base_seconds:
            raise ValueError(f"VAULT_RUN_RETRY_MAX_SECONDS ({self.run_retry_max_seconds:g}) is below "
                             f"VAULT_RUN_RETRY_BASE_SECONDS ({self.run_retry_base_seconds:g}): the backoff "
                             "starts at the base and doubles up to the maximum")
        return self

    @field_validator("journal_retention_years", mode="before")
    @classmethod
    def _empty_is_policy_max(cls, value: object) -> object:
        return None if value in ("", None) else value

    @field_validator("change_feeds")
    @classmethod
    def _known_feeds(cls, value: str) -> str:
        names = [n.strip().lower() for n in value.split(",") if n.strip()]
        unknown = [n for n in names if n not in FEEDS]
        if unknown:
            raise ValueError(f"unknown feed(s) {', '.join(unknown)}: choose among {', '.join(FEEDS)}")
        return ",".join(dict.fromkeys(names))

    @model_validator(mode="after")
    def _feeds_are_configured(self) -> VaultSettings:
        missing = {"seaweedfs-filer": ("VAULT_SEAWEEDFS_FILER", self.seaweedfs_filer),
                   "sqs": ("VAULT_SQS_QUEUE_URL", self.sqs_queue_url)}
        for feed in self.feeds:
            if feed in missing and not missing[feed][1].strip():
                raise ValueError(f"VAULT_CHANGE_FEEDS names {feed} but {missing[feed][0]} is not set")
            if feed == "app-table" and not os.environ.get("VAULT_APP_DATABASE_URL"):
                raise ValueError("VAULT_CHANGE_FEEDS names app-table but VAULT_APP_DATABASE_URL is not set")
        return self

    @field_validator("sftp_private_key_file", mode="before")
    @classmethod
    def _empty_is_no_key(cls, value: object) -> object:
        return None if value in ("", None) else value

    @field_validator("sftp_hot_prefix")
    @classmethod
    def _hot_prefix_is_a_folder(cls, value: str) -> str:
        if value and (not value.endswith("/") or value.startswith("/")):
            raise ValueError("must be empty or a relative key prefix ending with '/', e.g. 'sftp/'")
        return value

    @model_validator(mode="after")
    def _sftp_is_complete(self) -> VaultSettings:
        if not self.sftp_configured:
            return self
        problems = []
        if not self.sftp_username.strip():
            problems.append("SFTP_USERNAME is not set")
        key = self.sftp_private_key_file
        if key is None and not os.environ.get("SFTP_PASSWORD"):
            problems.append("neither SFTP_PRIVATE_KEY_FILE nor SFTP_PASSWORD is set")
        if key is not None and not (key.is_file() and os.access(key, os.R_OK)):
            problems.append(f"SFTP_PRIVATE_KEY_FILE {key} is not a readable file")
        known = self.sftp_known_hosts.strip()
        if known and known.lower() != "none" and not Path(known).is_file():
            problems.append(f"SFTP_KNOWN_HOSTS {known} is not a file (set 'none' to turn host key checking off)")
        if problems:
            raise ValueError(f"SFTP_HOST is set ({self.sftp_host}) but " + "; ".join(problems))
        return self

    @property
    def sftp_configured(self) -> bool:
        return bool(self.sftp_host.strip())

    @property
    def feeds(self) -> tuple[str, ...]:
        return tuple(n for n in self.change_feeds.split(",") if n)

    @field_validator("restore_drill_cron", "journal_seal_cron", "sweep_cron", "db_backup_cron", "db_restore_drill_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from dagster import DagsterInvalidDefinitionError, ScheduleDefinition

        value = " ".join(value.split())
        try:  # the schedule built from it checks it the way Dagster will
            ScheduleDefinition(name="cron_check", cron_schedule=value, job_name="cron_check")
        except DagsterInvalidDefinitionError:
            raise ValueError("must be a cron expression of five fields, e.g. '0 3 * * 1' (UTC)") from None
        return value

    @property
    def reserved_prefixes(self) -> tuple[str, ...]:
        """Cold-site prefixes the pipeline writes itself; hot keys under them are refused."""
        return (self.report_prefix, self.journal_prefix, self.db_backup_prefix)

    @property
    def multipart_threshold(self) -> int:
        return self.multipart_threshold_mb * MiB

    @property
    def part_size(self) -> int:
        return self.part_size_mb * MiB

    def retention_policy(self) -> RetentionPolicy:
        if self.retention_policy_file is None:
            return RetentionPolicy.default()
        return RetentionPolicy.from_file(self.retention_policy_file)


def setting_default(name: str) -> Any:
    """The default of one VaultSettings field. Defaults are declared there only; the domain's option classes
    (CopyOptions, EngineSettings, DrillSettings) take theirs from here, the resources have none."""
    return VaultSettings.model_fields[name].default


def load_settings() -> tuple[VaultSettings, RetentionPolicy]:
    """Read and validate everything at start-up; raise ConfigurationError naming each bad variable."""
    try:
        settings = VaultSettings()  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(p) for p in error["loc"])
            field = VaultSettings.model_fields.get(name)
            variable = field.alias if field and field.alias else name
            problems.append(f"{variable}={error.get('input')!r}: {error['msg']}")
        raise ConfigurationError("invalid vault-pipeline configuration: " + "; ".join(problems)) from None
    try:
        policy = settings.retention_policy()
    except PolicyError as exc:
        raise ConfigurationError(f"invalid vault-pipeline configuration: VAULT_RETENTION_POLICY_FILE: {exc}") from None
    try:
        by_directory = parse_document_types(settings.sftp_document_types)
    except ValueError as exc:
        raise ConfigurationError(f"invalid vault-pipeline configuration: SFTP_DOCUMENT_TYPES: {exc}") from None
    unknown = sorted({*by_directory.values(), settings.sftp_default_document_type.strip()} - set(policy.years_by_type))
    if unknown:  # a typo would silently give payslips the default retention
        raise ConfigurationError(
            f"invalid vault-pipeline configuration: SFTP_DOCUMENT_TYPES / SFTP_DEFAULT_DOCUMENT_TYPE name "
            f"{', '.join(unknown)}, not a type of the retention policy ({', '.join(sorted(policy.years_by_type))})")
    return settings, policy
