"""The embedded SFTP server of `make run` and the tests: asyncssh over real SSH/TCP, on loopback.

    root/sftp/           the served directory (clients see it as `/`); documents are dropped in `/inbox`
    root/sftp-keys/      ssh_host_ed25519_key (the server's), client_ed25519_key (the `vault` user's), both
                         generated once with mode 0600 and reused across restarts; known_hosts, rewritten at
                         each start for `[127.0.0.1]:PORT`
    root/sftp.log        the server's log

The server runs as its own process (vault_pipeline/devstack/sftp_server.py) started with start_process, so
it dies with its parent; it is ready once a client completes an SSH handshake and an SFTP session with the
exported settings. Keys live outside the served directory, so no client can read them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncssh

from vault_pipeline.devstack.ports import LOOPBACK
from vault_pipeline.devstack.process import ChildServer, start_process, stop_process, wait_until
from vault_pipeline.devstack.sftp_server import DEFAULT_USERNAME

SERVED_DIR = "sftp"
KEYS_DIR = "sftp-keys"
INBOX = "inbox"
REMOTE_INBOX = "/inbox"
HOST_KEY_FILE = "ssh_host_ed25519_key"
CLIENT_KEY_FILE = "client_ed25519_key"
KNOWN_HOSTS_FILE = "known_hosts"


def ensure_ed25519_key(path: Path) -> asyncssh.SSHKey:
    """The Ed25519 private key at `path` (OpenSSH format, mode 0600), generated on first use; its public key
    beside it as `path.pub`."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = asyncssh.generate_private_key("ssh-ed25519", comment=f"vault-pipeline dev stack {path.name}")
        partial = path.with_name(path.name + ".partial")
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key.export_private_key("openssh"))
        partial.replace(path)  # a crash mid-write never leaves half a key that later starts would reuse
    key = asyncssh.read_private_key(str(path))
    public = path.with_name(path.name + ".pub")
    public.write_bytes(key.export_public_key("openssh"))
    return key


def known_hosts_line(host: str, port: int, host_key: asyncssh.SSHKey) -> str:
    """An OpenSSH known_hosts line; a non-default port is written `[host]:port`, as OpenSSH does."""
    name = host if port == 22 else f"[{host}]:{port}"
    algorithm, blob = host_key.export_public_key("openssh").decode().split()[:2]  # without the comment
    return f"{name} {algorithm} {blob}\n"


def run_coroutine(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run `coroutine` to completion from synchronous code, even when called inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def handshake(host: str, port: int, username: str, private_key: Path, known_hosts: Path,
                    timeout: float = 5.0, remote_dir: str = REMOTE_INBOX) -> None:
    """Connect with host key checking and key authentication, open an SFTP session, stat the inbox."""
    async with asyncssh.connect(host, port, username=username, client_keys=[str(private_key)],
                                known_hosts=str(known_hosts), agent_path=None, config=[],
                                connect_timeout=timeout) as conn, conn.start_sftp_client() as sftp:
        await sftp.stat(remote_dir)


class SftpServer(ChildServer):
    """The stack's SFTP server, serving `root/sftp/` to the user `vault` on 127.0.0.1:`port`."""

    def __init__(self, root: Path, port: int, username: str = DEFAULT_USERNAME) -> None:
        self.root, self.port, self.username = Path(root).resolve(), port, username
        self.served_dir = self.root / SERVED_DIR
        self.inbox_dir = self.served_dir / INBOX
        self.keys_dir = self.root / KEYS_DIR
        self.host_key_path = self.keys_dir / HOST_KEY_FILE
        self.private_key_path = self.keys_dir / CLIENT_KEY_FILE
        self.known_hosts_path = self.keys_dir / KNOWN_HOSTS_FILE
        self.log_path = self.root / "sftp.log"

    @property
    def address(self) -> str:
        return f"sftp://{self.username}@{LOOPBACK}:{self.port}{REMOTE_INBOX}"

    def env(self) -> dict[str, str]:
        """The SFTP_* settings of the intake (README.md, "Configuration") pointing at this server."""
        return {
            "SFTP_HOST": LOOPBACK,
            "SFTP_PORT": str(self.port),
            "SFTP_USERNAME": self.username,
            "SFTP_PRIVATE_KEY_FILE": str(self.private_key_path),
            "SFTP_KNOWN_HOSTS": str(self.known_hosts_path),
            "SFTP_REMOTE_DIR": REMOTE_INBOX,
        }

    def prepare(self) -> None:
        """Directories, keys (once) and the known_hosts file for the current port."""
        self.inbox_dir.mkdir(parents=True, exist_ok=True)
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.keys_dir, 0o700)
        host_key = ensure_ed25519_key(self.host_key_path)
        ensure_ed25519_key(self.private_key_path)
        partial = self.known_hosts_path.with_name(KNOWN_HOSTS_FILE + ".partial")
        partial.write_text(known_hosts_line(LOOPBACK, self.port, host_key))
        partial.replace(self.known_hosts_path)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "vault_pipeline.devstack.sftp_server", "--root", str(self.served_dir),
                "--port", str(self.port), "--host", LOOPBACK, "--host-key", str(self.host_key_path),
                "--client-key", str(self.private_key_path) + ".pub", "--username", self.username]

    def handshake(self) -> None:
        run_coroutine(handshake(LOOPBACK, self.port, self.username, self.private_key_path, self.known_hosts_path))

    def start(self, timeout: float = 30) -> SftpServer:
        if self.is_running:
            return self
        self.prepare()
        self.process = start_process(self.command(), log_path=self.log_path, cwd=self.root)
        wait_until(self.handshake, timeout=timeout, process=self.process, what="the SFTP server (asyncssh)",
                   log_path=self.log_path)
        return self

    def stop(self) -> None:
        """SIGTERM: the server closes its listener and exits."""
        stop_process(self.process, stop_signal=signal.SIGTERM, timeout=10)
        self.process = None

    def __repr__(self) -> str:
        return f"SftpServer(port={self.port}, pid={self.pid})"
