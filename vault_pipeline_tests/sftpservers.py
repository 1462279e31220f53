"""The two real SFTP servers the SFTP intake is tested against, as one parametrised fixture `sftp_server`:

* "asyncssh": the embedded stack's server (vault_pipeline/devstack/sftp.py), in its own process;
* "openssh": Debian's OpenSSH `sshd -D -e` with a temporary config, host key, authorized key and loopback
  port; the client sees the inbox as `/inbox` under a `ChrootDirectory` when we are root (sshd requires
  root-owned, not group/world-writable directories up to the chroot, so it is made under /run, not /tmp),
  and as its absolute path on disk otherwise (`ForceCommand internal-sftp -d INBOX`). A non-root sshd can
  only authenticate the user running it, so the username is ours, not `vault`.

Without sshd the "openssh" flavour skips saying why (`.ci/ensure-openssh` installs it), and fails under
CI=true. Use with `pytest_plugins = ["vault_pipeline_tests.sftpservers"]` or import the fixture.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vault_pipeline.devstack.ports import LOOPBACK, find_free_port_block
from vault_pipeline.devstack.process import DevStackError, start_process, stop_process, wait_until
from vault_pipeline.devstack.sftp import REMOTE_INBOX, SftpServer, ensure_ed25519_key, handshake, run_coroutine

SSHD_ENV = "VAULT_TEST_SSHD"
START_ATTEMPTS = 3


@dataclass(frozen=True)
class SftpEndpoint:
    """What a client needs to reach one running SFTP server, and where its inbox is on disk."""

    flavour: str
    host: str
    port: int
    username: str
    private_key: Path
    known_hosts: Path
    inbox_dir: Path  # on disk, for arranging and checking files behind the server's back
    remote_inbox: str  # the inbox as the client names it
    pid: int

    def env(self) -> dict[str, str]:
        """The SFTP_* settings of the intake for this server."""
        return {"SFTP_HOST": self.host, "SFTP_PORT": str(self.port), "SFTP_USERNAME": self.username,
                "SFTP_PRIVATE_KEY_FILE": str(self.private_key), "SFTP_KNOWN_HOSTS": str(self.known_hosts),
                "SFTP_REMOTE_DIR": self.remote_inbox}


def sshd_binary() -> str | None:
    found = os.environ.get(SSHD_ENV, "").strip() or "/usr/sbin/sshd"
    return found if os.access(found, os.X_OK) else None


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


class OpenSshServer:
    """OpenSSH's sshd serving one inbox on a loopback port, with everything under `work_dir`."""

    def __init__(self, sshd: str, work_dir: Path, port: int) -> None:
        self.sshd, self.work_dir, self.port = sshd, work_dir, port
        self.username = getpass.getuser()
        self.chroot = os.geteuid() == 0
        self.log_path = work_dir / "sshd.log"
        self.host_key = work_dir / "ssh_host_ed25519_key"
        self.private_key = work_dir / "client_ed25519_key"
        self.known_hosts = work_dir / "known_hosts"
        self.config_path = work_dir / "sshd_config"
        self.process: subprocess.Popen[bytes] | None = None
        if self.chroot:  # every component root-owned and not writable by others: /run is, /tmp is not
            self.chroot_dir: Path | None = Path(tempfile.mkdtemp(prefix="vault-sftp-test-", dir="/run"))
            os.chmod(self.chroot_dir, 0o755)
            self.inbox_dir = self.chroot_dir / "inbox"
            self.remote_inbox = REMOTE_INBOX
        else:
            self.chroot_dir = None
            self.inbox_dir = work_dir / "served" / "inbox"
            self.remote_inbox = str(self.inbox_dir)

    def _prepare(self) -> None:
        self.inbox_dir.mkdir(parents=True, exist_ok=True)
        # ssh-keygen writes OpenSSH keys with mode 0600, as sshd requires of its host key.
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vault test sshd", "-f",
                        str(self.host_key)], check=True, stdin=subprocess.DEVNULL, capture_output=True)
        ensure_ed25519_key(self.private_key)
        authorized = self.work_dir / "authorized_keys"
        authorized.write_bytes(Path(str(self.private_key) + ".pub").read_bytes())
        authorized.chmod(0o600)
        algorithm, blob = (self.host_key.parent / (self.host_key.name + ".pub")).read_text().split()[:2]
        self.known_hosts.write_text(f"[{LOOPBACK}]:{self.port} {algorithm} {blob}\n")
        sftp = ([f"ChrootDirectory {self.chroot_dir}", f"ForceCommand internal-sftp -d {REMOTE_INBOX}"]
                if self.chroot else [f"ForceCommand internal-sftp -d {self.inbox_dir}"])
        self.config_path.write_text("\n".join([
            f"ListenAddress {LOOPBACK}:{self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {self.work_dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized}",
            f"AllowUsers {self.username}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",  # the temporary directories are ours, not a home directory's layout
            "AllowTcpForwarding no",
            "X11Forwarding no",
            "PermitTTY no",
            "Subsystem sftp internal-sftp",
            *sftp,
            "LogLevel VERBOSE",
        ]) + "\n")

    def start(self, timeout: float = 20) -> OpenSshServer:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self._prepare()
        self.process = start_process([self.sshd, "-D", "-e", "-f", str(self.config_path)], log_path=self.log_path)
        wait_until(lambda: run_coroutine(handshake(LOOPBACK, self.port, self.username, self.private_key,
                                                   self.known_hosts, remote_dir=self.remote_inbox)),
                   timeout=timeout, process=self.process, what="sshd", log_path=self.log_path)
        return self

    def stop(self) -> None:
        stop_process(self.process, stop_signal=signal.SIGTERM, timeout=10)
        self.process = None

    def cleanup(self) -> None:
        if self.chroot_dir is not None:
            shutil.rmtree(self.chroot_dir, ignore_errors=True)

    def endpoint(self) -> SftpEndpoint:
        assert self.process is not None
        return SftpEndpoint("openssh", LOOPBACK, self.port, self.username, self.private_key, self.known_hosts,
                            self.inbox_dir, self.remote_inbox, self.process.pid)


def start_openssh(sshd: str, work_dir: Path) -> OpenSshServer:
    """A running sshd under `work_dir`, on a free port (another process may take the port first: retried)."""
    for attempt in range(1, START_ATTEMPTS + 1):
        attempt_dir = work_dir / f"sshd-{attempt}"
        attempt_dir.mkdir(parents=True)
        server = OpenSshServer(sshd, attempt_dir, find_free_port_block(1))
        try:
            return server.start()
        except DevStackError:
            server.cleanup()
            if attempt == START_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def start_asyncssh(work_dir: Path) -> tuple[SftpEndpoint, SftpServer]:
    """The embedded stack's SFTP server under `work_dir`, on a free port (retried like start_openssh)."""
    for attempt in range(1, START_ATTEMPTS + 1):
        server = SftpServer(work_dir, find_free_port_block(1))
        try:
            server.start()
            break
        except DevStackError:
            if attempt == START_ATTEMPTS:
                raise
    assert server.process is not None
    return (SftpEndpoint("asyncssh", LOOPBACK, server.port, server.username, server.private_key_path,
                         server.known_hosts_path, server.inbox_dir, REMOTE_INBOX, server.process.pid), server)


def _asyncssh_server(work_dir: Path) -> Iterator[tuple[SftpEndpoint, SftpServer]]:
    endpoint, server = start_asyncssh(work_dir)
    try:
        yield endpoint, server
    finally:
        server.stop()


def _openssh_server(work_dir: Path) -> Iterator[tuple[SftpEndpoint, OpenSshServer]]:
    sshd = sshd_binary()
    if sshd is None:
        why = f"OpenSSH's sshd not found (/usr/sbin/sshd or {SSHD_ENV}): run `bash .ci/ensure-openssh`"
        if in_ci():
            pytest.fail(f"{why}; CI=true requires the OpenSSH SFTP tests to run")
        pytest.skip(why)
    server = start_openssh(sshd, work_dir)
    try:
        yield server.endpoint(), server
    finally:
        server.stop()
        server.cleanup()


@pytest.fixture(params=["asyncssh", "openssh"])
def sftp_server_and_process(request: pytest.FixtureRequest,
                            tmp_path: Path) -> Iterator[tuple[SftpEndpoint, SftpServer | OpenSshServer]]:
    """A running SFTP server of each flavour and its controller (to stop it in a test)."""
    make = _asyncssh_server if request.param == "asyncssh" else _openssh_server
    yield from make(tmp_path / f"sftp-{request.param}")


@pytest.fixture
def sftp_server(sftp_server_and_process: tuple[SftpEndpoint, SftpServer | OpenSshServer]) -> SftpEndpoint:
    """A running SFTP server, asyncssh's then OpenSSH's, with an empty inbox."""
    return sftp_server_and_process[0]
