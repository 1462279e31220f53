"""The SFTP inbox as a resource: connection settings (the password as EnvVar, never shown) and the
intake's tunables, all from VaultSettings (definitions.py), where their defaults are declared."""

from __future__ import annotations

import threading

from dagster import ConfigurableResource

from vault_pipeline.intake.sftp_client import KNOWN_HOSTS_DISABLED, SftpConfig, SftpPool
from vault_pipeline.intake.sftp_paths import DocumentTypeRule, parse_patterns
from vault_pipeline.intake.sftp_transfer import TransferSettings

MiB = 1024 * 1024
_SENSOR_POOLS: dict[SftpConfig, SftpPool] = {}
_SENSOR_POOLS_LOCK = threading.Lock()


class SftpInboxResource(ConfigurableResource):
    host: str
    port: int
    username: str
    private_key_file: str
    password: str  # EnvVar("SFTP_PASSWORD") when set, else empty
    passphrase: str  # EnvVar("SFTP_PRIVATE_KEY_PASSPHRASE") when set, else empty
    known_hosts: str  # empty: ~/.ssh/known_hosts; "none": not checked
    remote_dir: str
    hot_prefix: str
    max_workers: int
    stale_lock_minutes: float
    after_transfer: str
    processed_dir: str
    document_types: str
    default_document_type: str
    stable_seconds: float
    ignore_patterns: str
    max_attempts: int
    retry_after_seconds: float
    connect_timeout: float
    multipart_threshold_mb: int
    part_size_mb: int
    part_concurrency: int
    spool_dir: str | None
    spool_max_mb: int

    @property
    def configured(self) -> bool:
        return bool(self.host.strip())

    def config(self) -> SftpConfig:
        known = self.known_hosts.strip()
        return SftpConfig(
            host=self.host, port=self.port, username=self.username, remote_dir=self.remote_dir.rstrip("/") or "/",
            private_key_file=self.private_key_file or None, password=self.password or None,
            passphrase=self.passphrase or None,
            known_hosts=KNOWN_HOSTS_DISABLED if known.lower() == KNOWN_HOSTS_DISABLED else (known or None),
            connect_timeout=self.connect_timeout,
        )

    def pool(self, size: int | None = None) -> SftpPool:
        """A new pool for a run; closed by the caller."""
        return SftpPool(self.config(), size or self.max_workers)

    def sensor_pool(self) -> SftpPool:
        """The sensor's pool, kept across ticks in the code server's process: one SSH handshake, not one a tick."""
        config = self.config()
        with _SENSOR_POOLS_LOCK:
            if config not in _SENSOR_POOLS:
                _SENSOR_POOLS[config] = SftpPool(config, 1)
            return _SENSOR_POOLS[config]

    @property
    def lease_seconds(self) -> float:
        return self.stale_lock_minutes * 60

    @property
    def patterns(self) -> tuple[str, ...]:
        return parse_patterns(self.ignore_patterns)

    def transfer_settings(self) -> TransferSettings:
        config = self.config()
        return TransferSettings(
            inbox_id=config.inbox_id, remote_dir=config.remote_dir, hot_prefix=self.hot_prefix,
            after_transfer=self.after_transfer, processed_dir=self.processed_dir,
            document_types=DocumentTypeRule.parse(self.document_types, self.default_document_type),
            multipart_threshold=self.multipart_threshold_mb * MiB, part_size=self.part_size_mb * MiB,
            part_concurrency=self.part_concurrency, max_workers=self.max_workers, lease_seconds=self.lease_seconds,
            max_attempts=self.max_attempts, retry_after_seconds=self.retry_after_seconds, spool_dir=self.spool_dir,
            spool_max_bytes=self.spool_max_mb * MiB,
        )

    def describe(self) -> str:
        return self.config().inbox_id if self.configured else "SFTP intake not configured (SFTP_HOST unset)"
