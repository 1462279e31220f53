"""The servers of one benchmark invocation, on free loopback ports under a temporary directory: PostgreSQL
(pgserver), the hot SeaweedFS site, and the SFTP servers asked for (asyncssh's embedded server, OpenSSH's
sshd). Each SFTP server is described by the tests' SftpEndpoint: address, keys, known_hosts and where its
inbox is on disk (files are arranged there behind the server's back, as a producer would)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from vault_pipeline.devstack.buckets import ensure_bucket
from vault_pipeline.devstack.ports import SITE_PORT_BLOCK, find_free_port_block
from vault_pipeline.devstack.postgres import EmbeddedPostgres
from vault_pipeline.devstack.process import DevStackError
from vault_pipeline.devstack.seaweed import SeaweedSite
from vault_pipeline.devstack.sftp import SftpServer
from vault_pipeline.devstack.stack import HOT_CREDENTIALS
from vault_pipeline_tests.sftpservers import SSHD_ENV, OpenSshServer, SftpEndpoint, sshd_binary, start_asyncssh
from vault_pipeline_tests.sftpservers import start_openssh as start_sshd

FLAVOURS = ("asyncssh", "openssh")
START_ATTEMPTS = 3


@dataclass
class BenchServers:
    root: Path
    postgres: EmbeddedPostgres
    hot: SeaweedSite
    sftp: dict[str, SftpEndpoint] = field(default_factory=dict)
    _controllers: list[SftpServer | OpenSshServer] = field(default_factory=list)

    def pids(self, flavour: str) -> dict[str, int | None]:
        """The processes whose CPU a run on `flavour` is charged with (each with its descendants)."""
        return {"sftp_server": self.sftp[flavour].pid, "hot_s3": self.hot.pid, "postgres": self.postgres.pid}

    def stop(self) -> None:
        for controller in reversed(self._controllers):
            controller.stop()
            if isinstance(controller, OpenSshServer):
                controller.cleanup()
        self._controllers.clear()
        self.hot.stop()
        self.postgres.stop()


def start_openssh(root: Path) -> tuple[SftpEndpoint, OpenSshServer]:
    sshd = sshd_binary()
    if sshd is None:
        raise SystemExit(f"--server openssh needs OpenSSH's sshd (/usr/sbin/sshd or {SSHD_ENV}): "
                         "run `bash .ci/ensure-openssh`")
    server = start_sshd(sshd, root)
    return server.endpoint(), server


def _start_hot(root: Path) -> SeaweedSite:
    for attempt in range(1, START_ATTEMPTS + 1):
        site = SeaweedSite("hot", root / "hot", find_free_port_block(SITE_PORT_BLOCK), *HOT_CREDENTIALS)
        try:
            return site.start()
        except DevStackError:
            shutil.rmtree(root / "hot", ignore_errors=True)
            if attempt == START_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _start_postgres(root: Path) -> EmbeddedPostgres:
    for attempt in range(1, START_ATTEMPTS + 1):
        postgres = EmbeddedPostgres(root / "postgres", find_free_port_block(1))
        try:
            return postgres.start()
        except DevStackError:
            if attempt == START_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def start_servers(root: Path, flavours: list[str]) -> BenchServers:
    """Start everything (from the main thread: the servers die with the thread that started them)."""
    root.mkdir(parents=True, exist_ok=True)
    postgres = _start_postgres(root)
    try:
        servers = BenchServers(root, postgres, _start_hot(root))
    except BaseException:
        postgres.stop()
        raise
    try:
        for flavour in flavours:
            start = start_asyncssh if flavour == "asyncssh" else start_openssh
            endpoint, controller = start(root / f"sftp-{flavour}")
            servers.sftp[flavour] = endpoint
            servers._controllers.append(controller)
    except BaseException:
        servers.stop()
        raise
    return servers


def new_hot_bucket(servers: BenchServers, name: str) -> str:
    """A fresh bucket, warmed up: SeaweedFS grows the first volumes of a new bucket on its first write
    (~0.2 s), a one-off cost no contender should pay inside its timing."""
    client = servers.hot.client()
    ensure_bucket(client, name, object_lock=False)
    client.put_object(Bucket=name, Key="warm-up", Body=b"warm-up")
    client.delete_object(Bucket=name, Key="warm-up")
    return name
