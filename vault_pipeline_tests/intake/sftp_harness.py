"""An SFTP intake wired to real servers for the tests: an SFTP server (asyncssh's or OpenSSH's), the hot
SeaweedFS site and PostgreSQL. `scan()` is one listing pass of the inbox sensor's logic, `transfer()` one
transfer run; files are arranged on the server's disk behind its back, as a producer would. Also: servers
whose file access obeys file modes (`unprivileged_sftp_server`), and endpoints reached through a proxy."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from vault_pipeline.devstack.buckets import ensure_bucket
from vault_pipeline.devstack.ports import LOOPBACK, find_free_port_block
from vault_pipeline.devstack.process import DevStackError
from vault_pipeline.devstack.sftp import REMOTE_INBOX, SftpServer, known_hosts_line
from vault_pipeline.intake.sftp_client import SftpConfig, SftpPool
from vault_pipeline.intake.sftp_inbox import ScanReport, ScanState, scan_inbox
from vault_pipeline.intake.sftp_paths import DocumentTypeRule
from vault_pipeline.intake.sftp_transfer import SftpTransfer, TransferReport, TransferSettings
from vault_pipeline.replication.tracking import TrackingStore
from vault_pipeline_tests.conftest import unique
from vault_pipeline_tests.sftpservers import (
    START_ATTEMPTS,
    OpenSshServer,
    SftpEndpoint,
    _asyncssh_server,
    _openssh_server,
    sshd_binary,
)

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
        with self.transferrer(**overrides) as transfer:
            return transfer.run()

    @contextmanager
    def transferrer(self, **overrides: Any) -> Iterator[SftpTransfer]:
        """The SftpTransfer a transfer run uses, for driving one file's steps directly."""
        settings = replace(self.settings, **overrides)
        with SftpPool(self.config, settings.max_workers) as pool:
            yield SftpTransfer(
                pool=pool, transfer_log=self.store, hot=self.hot, hot_bucket=self.hot_bucket, settings=settings,
                owner=unique("run"),
                register=lambda objects: self.store.register(objects, source_bucket=self.hot_bucket,
                                                         destination_bucket="cold"),
            )

    def rows(self) -> dict[str, dict[str, Any]]:
        with self.store.pool.connection() as conn:
            cur = conn.execute("SELECT * FROM vault_secure.file_transfer_log WHERE inbox = %s",
                               (self.config.inbox_id,))
            names = [c.name for c in cur.description]
            return {r[names.index("filename")]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}

    def head(self, key: str) -> dict[str, Any]:
        return self.hot.head_object(Bucket=self.hot_bucket, Key=key, ChecksumMode="ENABLED")

    def hot_objects(self) -> dict[str, int]:
        """Every object of the hot bucket: key -> size."""
        found: dict[str, int] = {}
        for page in self.hot.get_paginator("list_objects_v2").paginate(Bucket=self.hot_bucket):
            found.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
        return found

    def hot_body(self, key: str) -> bytes:
        return self.hot.get_object(Bucket=self.hot_bucket, Key=key)["Body"].read()

    def open_uploads(self) -> list[dict[str, Any]]:
        return self.hot.list_multipart_uploads(Bucket=self.hot_bucket).get("Uploads", [])

    def replication_keys(self) -> list[str]:
        """The hot keys registered for replication (vault_secure.replication_status)."""
        return [row["s3_key"] for row in self.store.rows(self.hot_bucket)]


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


intake_on = contextmanager(make_intake)


def known_hosts_for_port(endpoint: SftpEndpoint, port: int, path: Path) -> Path:
    """A known_hosts file giving the server's own key for LOOPBACK:`port` (a proxy in front of it)."""
    lines = [f"[{LOOPBACK}]:{port} {line.split(None, 1)[1]}" for line in endpoint.known_hosts.read_text().splitlines()
             if line.strip()]
    path.write_text("\n".join(lines) + "\n")
    return path


def through_proxy(endpoint: SftpEndpoint, proxy_port: int, work_dir: Path) -> SftpEndpoint:
    """The endpoint as a client reaching the server through a proxy on `proxy_port` sees it."""
    return replace(endpoint, port=proxy_port,
                   known_hosts=known_hosts_for_port(endpoint, proxy_port, work_dir / "proxy_known_hosts"))


def known_hosts_with_another_key(endpoint: SftpEndpoint, path: Path) -> Path:
    """A known_hosts file listing a key for the server's host:port that is not the server's."""
    other = asyncssh.generate_private_key("ssh-ed25519")
    path.write_text(known_hosts_line(endpoint.host, endpoint.port, other))
    return path


# -- servers whose file access obeys file modes --------------------------------------------------------------
# The tests run as root, which reads and writes whatever the modes say. For a real permission denied:
# * sshd's SFTP sessions log in as `nobody` (sshd switches user, as for any login);
# * the asyncssh server runs as root without the capabilities that let root ignore file modes
#   (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER): the kernel then applies the owner's bits to it, so
#   a root-owned file of mode 000 cannot be read. It cannot switch to `nobody` instead: the interpreter lives
#   under /root (0700), and asyncio and asyncssh import modules lazily once serving, which `nobody` cannot read.
# Their directories are made outside the tests' 0700 temporary tree, so that `nobody` can reach them.
UNPRIVILEGED_USER = "nobody"
MODE_BYPASSING_CAPABILITIES = "-dac_override,-dac_read_search,-fowner"


class UnprivilegedSftpServer(SftpServer):
    """The stack's asyncssh server, its process without the capabilities that bypass file modes."""

    def command(self) -> list[str]:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) not found: cannot drop the server's capabilities")
        return [setpriv, f"--inh-caps={MODE_BYPASSING_CAPABILITIES}",
                f"--bounding-set={MODE_BYPASSING_CAPABILITIES}", "--", *super().command()]


class UnprivilegedOpenSshServer(OpenSshServer):
    """sshd (root, chrooted) whose SFTP sessions are UNPRIVILEGED_USER's."""

    def __init__(self, sshd: str, work_dir: Path, port: int) -> None:
        super().__init__(sshd, work_dir, port)
        self.username = UNPRIVILEGED_USER

    def _prepare(self) -> None:
        super()._prepare()
        (self.work_dir / "authorized_keys").chmod(0o644)  # sshd reads it as the user who logs in


def _start(make: Any, work_dir: Path) -> Any:
    """make(work_dir for this attempt, port) started; a port taken meanwhile costs another attempt."""
    for attempt in range(1, START_ATTEMPTS + 1):
        attempt_dir = work_dir / f"attempt-{attempt}"
        attempt_dir.mkdir(mode=0o755)
        server = make(attempt_dir, find_free_port_block(1))
        try:
            return server.start()
        except DevStackError:
            if isinstance(server, OpenSshServer):
                server.cleanup()
            if attempt == START_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


@contextmanager
def unprivileged_sftp_server(flavour: str, work_dir: Path) -> Iterator[SftpEndpoint]:
    """A server of `flavour` whose file access is an unprivileged user's, with an empty inbox."""
    if os.geteuid() != 0:  # the ordinary servers already run as we do, and file modes apply to us
        ordinary = (_asyncssh_server if flavour == "asyncssh" else _openssh_server)(work_dir)
        endpoint, _ = next(ordinary)
        try:
            yield endpoint
        finally:
            ordinary.close()
        return
    reachable = Path(tempfile.mkdtemp(prefix="vault-sftp-unprivileged-", dir="/tmp"))
    reachable.chmod(0o755)
    server: UnprivilegedSftpServer | UnprivilegedOpenSshServer | None = None
    try:
        if flavour == "asyncssh":
            server = _start(UnprivilegedSftpServer, reachable)
            assert server.process is not None
            yield SftpEndpoint("asyncssh", LOOPBACK, server.port, server.username, server.private_key_path,
                               server.known_hosts_path, server.inbox_dir, REMOTE_INBOX, server.process.pid)
        else:
            sshd = sshd_binary()
            if sshd is None:
                pytest.skip("OpenSSH's sshd not found: run `bash .ci/ensure-openssh`")
            server = _start(lambda directory, port: UnprivilegedOpenSshServer(sshd, directory, port), reachable)
            yield server.endpoint()
    finally:
        if server is not None:
            server.stop()
            if isinstance(server, OpenSshServer):
                server.cleanup()
        shutil.rmtree(reachable, ignore_errors=True)
