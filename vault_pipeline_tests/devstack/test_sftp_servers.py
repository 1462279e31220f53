"""The two real SFTP servers of the SFTP intake's tests (asyncssh's, embedded in the stack, and OpenSSH's
sshd), driven with asyncssh's client over TCP: key authentication with host key checking, the file
operations the intake uses on awkward names, a refused wrong host key, confinement of the embedded server
to its directory, servers gone after stop; and the dev stack's exported SFTP_* settings connecting."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from vault_pipeline.devstack.ports import find_free_port_block
from vault_pipeline.devstack.runner import banner
from vault_pipeline.devstack.sftp import SftpServer
from vault_pipeline.devstack.stack import DevStack
from vault_pipeline_tests.devstack.test_devstack import free_ports, gone, wait_for
from vault_pipeline_tests.sftpservers import OpenSshServer, SftpEndpoint

# The `sftp_server` fixture comes from vault_pipeline_tests/sftpservers.py, a plugin of the root conftest.

AWKWARD_NAME = "Relevé de paie \u2013 mars 2026 (copie) 給与.pdf"  # an en dash, accents, CJK, spaces


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coroutine)


def connect(endpoint: SftpEndpoint, known_hosts: Path | None = None) -> Any:
    return asyncssh.connect(endpoint.host, endpoint.port, username=endpoint.username,
                            client_keys=[str(endpoint.private_key)],
                            known_hosts=str(known_hosts or endpoint.known_hosts), agent_path=None, config=[])


def test_key_auth_with_known_hosts_then_list_upload_download_rename_an_awkward_name(
        sftp_server: SftpEndpoint, tmp_path: Path) -> None:
    body = os.urandom(300_000)  # several SFTP packets
    local = tmp_path / "upload.pdf"
    local.write_bytes(body)
    (sftp_server.inbox_dir / "already there.pdf").write_bytes(b"%PDF-1.7 x")

    async def scenario() -> tuple[list[str], bytes, list[str], str]:
        inbox = sftp_server.remote_inbox
        async with connect(sftp_server) as conn, conn.start_sftp_client() as sftp:
            await sftp.put(str(local), f"{inbox}/{AWKWARD_NAME}")
            listed = sorted(await sftp.listdir(inbox))
            await sftp.get(f"{inbox}/{AWKWARD_NAME}", str(tmp_path / "download.pdf"))
            await sftp.mkdir(f"{inbox}/processed")
            await sftp.rename(f"{inbox}/{AWKWARD_NAME}", f"{inbox}/processed/{AWKWARD_NAME}")
            after = sorted(await sftp.listdir(inbox))
            return listed, (tmp_path / "download.pdf").read_bytes(), after, await sftp.realpath(inbox)

    listed, downloaded, after, real_inbox = run(scenario())
    assert listed == [".", "..", AWKWARD_NAME, "already there.pdf"]
    assert downloaded == body
    assert after == [".", "..", "already there.pdf", "processed"]
    assert (sftp_server.inbox_dir / "processed" / AWKWARD_NAME).read_bytes() == body  # really on that disk
    assert not (sftp_server.inbox_dir / AWKWARD_NAME).exists()
    assert real_inbox == sftp_server.remote_inbox


def test_a_wrong_known_hosts_entry_is_refused_naming_the_host(sftp_server: SftpEndpoint, tmp_path: Path) -> None:
    other_key = asyncssh.generate_private_key("ssh-ed25519")
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[{sftp_server.host}]:{sftp_server.port} "
                     + " ".join(other_key.export_public_key("openssh").decode().split()[:2]) + "\n")

    async def attempt() -> None:
        async with connect(sftp_server, known_hosts=wrong):
            pass

    with pytest.raises(asyncssh.HostKeyNotVerifiable) as refused:
        run(attempt())
    assert sftp_server.host in str(refused.value)


def test_a_key_that_is_not_authorized_is_refused(sftp_server: SftpEndpoint, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    stranger.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh"))

    async def attempt() -> None:
        async with asyncssh.connect(sftp_server.host, sftp_server.port, username=sftp_server.username,
                                    client_keys=[str(stranger)], known_hosts=str(sftp_server.known_hosts),
                                    agent_path=None, config=[]):
            pass

    with pytest.raises(asyncssh.PermissionDenied):
        run(attempt())


def test_the_server_process_is_gone_after_stop(
        sftp_server_and_process: tuple[SftpEndpoint, SftpServer | OpenSshServer]) -> None:
    endpoint, server = sftp_server_and_process
    assert not gone(endpoint.pid)
    server.stop()
    wait_for(lambda: gone(endpoint.pid), 10, f"{endpoint.flavour} server exit")

    async def attempt() -> None:
        async with connect(endpoint):
            pass

    with pytest.raises(OSError):
        run(attempt())


# --- the embedded (asyncssh) server's confinement ---------------------------------------------------------

@pytest.fixture
def embedded(tmp_path: Path) -> Any:
    server = SftpServer(tmp_path / "root", find_free_port_block(1)).start()
    try:
        yield server
    finally:
        server.stop()


def embedded_endpoint(server: SftpServer) -> SftpEndpoint:
    assert server.process is not None
    return SftpEndpoint("asyncssh", "127.0.0.1", server.port, server.username, server.private_key_path,
                        server.known_hosts_path, server.inbox_dir, "/inbox", server.process.pid)


def test_dot_dot_and_absolute_paths_stay_inside_the_served_directory(embedded: SftpServer) -> None:
    secret = embedded.root / "outside.txt"  # beside the served directory, like the keys
    secret.write_text("not served")

    async def scenario() -> tuple[str, str, list[str], bool]:
        async with connect(embedded_endpoint(embedded)) as conn, conn.start_sftp_client() as sftp:
            real_up = await sftp.realpath("/inbox/../../..")
            root_listing = sorted(await sftp.listdir("/../.."))
            exists_via_dotdot = await sftp.exists("/../outside.txt")
            await sftp.put(str(secret), "/../../escaped.txt")  # lands in the served root, not above it
            return real_up, await sftp.realpath("/../../escaped.txt"), root_listing, exists_via_dotdot

    real_up, escaped, root_listing, exists_via_dotdot = run(scenario())
    assert real_up == "/" and escaped == "/escaped.txt"
    assert root_listing == [".", "..", "inbox"]
    assert not exists_via_dotdot
    assert (embedded.served_dir / "escaped.txt").read_text() == "not served"
    assert not (embedded.root.parent / "escaped.txt").exists()
    with pytest.raises(asyncssh.SFTPNoSuchFile):
        run(_stat(embedded, str(secret)))  # an absolute path on the host's disk names nothing inside


async def _stat(server: SftpServer, path: str) -> Any:
    async with connect(embedded_endpoint(server)) as conn, conn.start_sftp_client() as sftp:
        return await sftp.stat(path)


def test_a_symlink_pointing_outside_is_never_followed(embedded: SftpServer, tmp_path: Path) -> None:
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir()
    (outside_dir / "secret.txt").write_text("secret")
    (embedded.inbox_dir / "file-link.pdf").symlink_to(outside_dir / "secret.txt")
    (embedded.inbox_dir / "dir-link").symlink_to(outside_dir)
    (embedded.inbox_dir / "inside-link.pdf").symlink_to(embedded.inbox_dir / "real.pdf")
    (embedded.inbox_dir / "real.pdf").write_bytes(b"%PDF inside")

    async def scenario() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with connect(embedded_endpoint(embedded)) as conn, conn.start_sftp_client() as sftp:
            names = {entry.filename: entry.attrs for entry in await sftp.readdir("/inbox")}
            seen["link_listed_as_link"] = names["file-link.pdf"].type == asyncssh.FILEXFER_TYPE_SYMLINK
            seen["inside_link"] = await (await sftp.open("/inbox/inside-link.pdf", "rb")).read()
            for name, action in [
                ("open", lambda: sftp.open("/inbox/file-link.pdf", "rb")),
                ("stat", lambda: sftp.stat("/inbox/file-link.pdf")),
                ("write", lambda: sftp.open("/inbox/dir-link/new.txt", "wb")),
                ("list", lambda: sftp.listdir("/inbox/dir-link")),
                ("through", lambda: sftp.stat("/inbox/dir-link/secret.txt")),
                ("hardlink", lambda: sftp.link("/inbox/file-link.pdf", "/inbox/hard.pdf")),
            ]:
                try:
                    await action()
                    seen[name] = "allowed"
                except asyncssh.SFTPError as exc:
                    seen[name] = type(exc).__name__
            await sftp.remove("/inbox/file-link.pdf")  # the link itself can be removed
        return seen

    seen = run(scenario())
    assert seen.pop("link_listed_as_link") is True
    assert seen.pop("inside_link") == b"%PDF inside"
    assert seen == dict.fromkeys(("open", "stat", "write", "list", "through", "hardlink"), "SFTPPermissionDenied")
    assert not (embedded.inbox_dir / "file-link.pdf").is_symlink()
    assert sorted(p.name for p in outside_dir.iterdir()) == ["secret.txt"]
    assert (outside_dir / "secret.txt").read_text() == "secret"


def test_keys_are_made_once_with_mode_0600_and_reused_across_restarts(tmp_path: Path) -> None:
    first = SftpServer(tmp_path, find_free_port_block(1)).start()
    try:
        host_key, client_key = first.host_key_path.read_bytes(), first.private_key_path.read_bytes()
    finally:
        first.stop()
    assert (first.host_key_path.stat().st_mode & 0o777, first.private_key_path.stat().st_mode & 0o777) == (
        0o600, 0o600)
    assert not first.keys_dir.is_relative_to(first.served_dir)  # no client can read the keys
    second = SftpServer(tmp_path, find_free_port_block(1)).start()
    try:
        assert (second.host_key_path.read_bytes(), second.private_key_path.read_bytes()) == (host_key, client_key)
        assert second.known_hosts_path.read_text().startswith(f"[127.0.0.1]:{second.port} ssh-ed25519 ")
        run(_stat(second, "/inbox"))
    finally:
        second.stop()


# --- the dev stack ----------------------------------------------------------------------------------------

def test_the_dev_stack_exports_sftp_settings_that_a_client_uses_as_they_are(tmp_path: Path) -> None:
    ports = free_ports()
    sftp_port = ports["sftp_port"]
    with DevStack(tmp_path / ".vault", cold_flavour="moto", **ports) as stack:
        env = stack.env()
        assert {name: env[name] for name in env if name.startswith("SFTP_")} == {
            "SFTP_HOST": "127.0.0.1", "SFTP_PORT": str(sftp_port), "SFTP_USERNAME": "vault",
            "SFTP_PRIVATE_KEY_FILE": str(stack.root / "sftp-keys" / "client_ed25519_key"),
            "SFTP_KNOWN_HOSTS": str(stack.root / "sftp-keys" / "known_hosts"), "SFTP_REMOTE_DIR": "/inbox"}
        assert DevStack.load_env(stack.root) == env
        shown = banner(stack, None)
        assert f"sftp://vault@127.0.0.1:{sftp_port}/inbox" in shown and str(stack.root / "sftp" / "inbox") in shown

        async def drop() -> None:
            async with asyncssh.connect(env["SFTP_HOST"], int(env["SFTP_PORT"]), username=env["SFTP_USERNAME"],
                                        client_keys=[env["SFTP_PRIVATE_KEY_FILE"]],
                                        known_hosts=env["SFTP_KNOWN_HOSTS"], agent_path=None, config=[]) as conn, \
                    conn.start_sftp_client() as sftp:
                await sftp.mkdir(f"{env['SFTP_REMOTE_DIR']}/a")
                async with sftp.open(f"{env['SFTP_REMOTE_DIR']}/a/b.pdf", "wb") as remote:
                    await remote.write(b"%PDF-1.7 dropped")

        run(drop())
        assert (stack.root / "sftp" / "inbox" / "a" / "b.pdf").read_bytes() == b"%PDF-1.7 dropped"
        sftp_pid = stack.sftp.pid
        assert sftp_pid is not None
    wait_for(lambda: gone(sftp_pid), 10, "the stack's SFTP server exit")

