"""An SFTP intake wired to real servers for the tests: an SFTP server (asyncssh's or OpenSSH's), the hot
SeaweedFS site and PostgreSQL. `scan()` is one listing pass of the inbox sensor's logic, `transfer()` one
transfer run; files are arranged on the server's disk behind its back, as a producer would."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vault_pipeline.devstack.buckets import ensure_bucket
from vault_pipeline.intake.sftp_client import SftpConfig, SftpPool
from vault_pipeline.intake.sftp_inbox import ScanReport, ScanState, scan_inbox
from vault_pipeline.intake.sftp_paths import DocumentTypeRule
from vault_pipeline.intake.sftp_transfer import SftpTransfer, TransferReport, TransferSettings
from vault_pipeline.replication.tracking import TrackingStore
from vault_pipeline_tests.conftest import unique
from vault_pipeline_tests.sftpservers import SftpEndpoint

MiB = 1024 * 1024


@dataclass
class Intake:
    endpoint: SftpEndpoint
    store: TrackingStore
    hot: Any
    hot_bucket: str
    settings: TransferSettings
    config: SftpConfig
    state: ScanState = field(default_factory=ScanState)

    @property
    def inbox(self) -> Path:
        return self.endpoint.inbox_dir

    def drop(self, name: str, body: bytes, *, mtime: float | None = None) -> Path:
        path = self.inbox / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        when = mtime if mtime is not None else (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).timestamp()
        os.utime(path, (when, when))
        return path

    def scan(self, *, settle_seconds: float = 0.0, passes: int = 2) -> list[ScanReport]:
        """`passes` complete listing passes (two looks make a file stable)."""
        reports = []
        with SftpPool(self.config, 1) as pool:
            for _ in range(passes):
                while True:
                    report, self.state = scan_inbox(
                        pool, self.store, inbox_id=self.config.inbox_id, remote_dir=self.config.remote_dir,
                        processed_dir=self.settings.processed_dir, ignore_patterns=(".*", "*.part"),
                        settle_seconds=settle_seconds, state=self.state, budget_seconds=30)
                    reports.append(report)
                    if report.pass_complete:
                        break
        return reports

    def transfer(self, **overrides: Any) -> TransferReport:
        settings = replace(self.settings, **overrides)
        with SftpPool(self.config, settings.max_workers) as pool:
            return SftpTransfer(
                pool=pool, transfer_log=self.store, hot=self.hot, hot_bucket=self.hot_bucket, settings=settings,
                owner=unique("run"),
                register=lambda obj: self.store.register([obj], source_bucket=self.hot_bucket,
                                                         destination_bucket="cold"),
            ).run()

    def rows(self) -> dict[str, dict[str, Any]]:
        with self.store.pool.connection() as conn:
            cur = conn.execute("SELECT * FROM vault_secure.file_transfer_log WHERE inbox = %s",
                               (self.config.inbox_id,))
            names = [c.name for c in cur.description]
            return {r[names.index("filename")]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}

    def head(self, key: str) -> dict[str, Any]:
        return self.hot.head_object(Bucket=self.hot_bucket, Key=key, ChecksumMode="ENABLED")


def make_intake(endpoint: SftpEndpoint, hot_site: Any, tracking_dsn: str, **overrides: Any) -> Iterator[Intake]:
    store = TrackingStore(tracking_dsn)
    store.migrate()
    hot_bucket = unique("hot")
    hot = hot_site.client()
    ensure_bucket(hot, hot_bucket, object_lock=False)
    config = SftpConfig(host=endpoint.host, port=endpoint.port, username=endpoint.username,
                        remote_dir=endpoint.remote_inbox, private_key_file=str(endpoint.private_key),
                        known_hosts=str(endpoint.known_hosts), connect_timeout=10, io_timeout=20)
    settings = TransferSettings(
        inbox_id=config.inbox_id, remote_dir=config.remote_dir, hot_prefix="sftp/", after_transfer="move",
        processed_dir="processed", document_types=DocumentTypeRule.parse("payroll=payslip,invoices=invoice", "general"),
        multipart_threshold=8 * MiB, part_size=5 * MiB, part_concurrency=2, max_workers=4, lease_seconds=60,
        max_attempts=3, retry_after_seconds=0, chunk_size=1 * MiB)
    settings = replace(settings, **overrides)
    try:
        yield Intake(endpoint, store, hot, hot_bucket, settings, config)
    finally:
        store.close()
