"""The embedded SFTP server's process: asyncssh serving one directory to one user, on loopback.

    python -m vault_pipeline.devstack.sftp_server --root DIR --port P --host-key FILE \
        --client-key FILE.pub [--username vault]

Started by vault_pipeline/devstack/sftp.py (SftpServer), which generates the keys and waits for an SSH
handshake. Only public-key authentication of `--username` with the one client key is accepted; only the
SFTP subsystem is served (no shell, exec, port forwarding or SCP). SIGTERM closes the listener and exits.

Confinement: asyncssh's SFTPServer `chroot` maps every client path under DIR and normalises `..` away, but
its documentation says that pre-existing symlinks inside the chroot which point outside it are followed.
ConfinedSFTPServer closes that gap: every directory leading to a path must resolve inside DIR, and every
operation that follows the last component (open, stat, setstat, directory listing, statvfs, hard link) is
refused when the path resolves outside DIR. Operations on a link itself (lstat, readlink, remove, rename)
stay allowed, so a client can see such a link and delete it, never read through it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh

DEFAULT_USERNAME = "vault"


class ConfinedSFTPServer(asyncssh.SFTPServer):
    """asyncssh's chrooted SFTPServer that also never follows a symlink out of its root (see above)."""

    def __init__(self, chan: asyncssh.SSHServerChannel, root: Path) -> None:
        super().__init__(chan, chroot=os.fsencode(root))
        self._root = os.fsencode(os.path.realpath(root))

    def _inside(self, local: bytes) -> bool:
        return local == self._root or local.startswith(self._root + b"/")

    def map_path(self, path: bytes) -> bytes:
        """The chrooted path, its directories resolved: a symlinked directory can never lead outside."""
        local = super().map_path(path)
        parent, name = os.path.split(local.rstrip(b"/") or b"/")
        real_parent = os.path.realpath(parent)
        if not self._inside(real_parent):
            if local.rstrip(b"/") == self._root:
                return self._root
            raise asyncssh.SFTPPermissionDenied("path leads outside the served directory")
        return os.path.join(real_parent, name)

    def _followed(self, path: bytes) -> bytes:
        """The local path of `path` for an operation that follows its last component (a symlink)."""
        local = self.map_path(path)
        if not self._inside(os.path.realpath(local)):
            raise asyncssh.SFTPPermissionDenied("symlink points outside the served directory")
        return local

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> Any:
        self._followed(path)
        return super().open(path, pflags, attrs)

    def open56(self, path: bytes, desired_access: int, flags: int, attrs: asyncssh.SFTPAttrs) -> Any:
        self._followed(path)
        return super().open56(path, desired_access, flags, attrs)

    def stat(self, path: bytes) -> Any:
        self._followed(path)
        return super().stat(path)

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> Any:
        self._followed(path)
        return super().setstat(path, attrs)

    def statvfs(self, path: bytes) -> Any:
        self._followed(path)
        return super().statvfs(path)

    def link(self, oldpath: bytes, newpath: bytes) -> Any:
        self._followed(oldpath)  # os.link follows a symlink: a hard link to an outside file would escape
        return super().link(oldpath, newpath)

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        self._followed(path)
        async for name in super().scandir(path):
            yield name


class OneUserServer(asyncssh.SSHServer):
    """Public-key authentication of one user with one key; nothing else."""

    def __init__(self, username: str, client_key: asyncssh.SSHKey) -> None:
        self.username, self.client_key = username, client_key

    def begin_auth(self, username: str) -> bool:
        return True  # authentication is always required

    def password_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self.username and key.public_data == self.client_key.public_data


async def serve(root: Path, port: int, host_key: Path, client_key: Path, username: str, host: str) -> None:
    client_public = asyncssh.read_public_key(str(client_key))
    root = root.resolve()
    server = await asyncssh.listen(
        host, port, server_host_keys=[str(host_key)],
        server_factory=lambda: OneUserServer(username, client_public),
        sftp_factory=lambda chan: ConfinedSFTPServer(chan, root),
        allow_scp=False, agent_forwarding=False, x11_forwarding=False, allow_pty=False, kbdint_auth=False,
        password_auth=False, encoding=None,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    print(f"sftp server: serving {root} to {username!r} on {host}:{port}", flush=True)
    await stopping.wait()
    server.close()
    await server.wait_closed()
    print("sftp server: stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--host-key", type=Path, required=True)
    parser.add_argument("--client-key", type=Path, required=True, help="the client's public key (OpenSSH format)")
    parser.add_argument("--username", default=DEFAULT_USERNAME)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.root, args.port, args.host_key, args.client_key, args.username, args.host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
