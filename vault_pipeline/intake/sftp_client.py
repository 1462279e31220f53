"""SFTP sessions of the intake: asyncssh connections kept open and reused across files.

asyncssh is asynchronous; the intake's workers are threads (they also talk to S3 and PostgreSQL with
blocking clients). A pool owns one event loop in a thread of its own, and its sessions run their coroutines
there: a worker thread checks a session out, calls its blocking methods, and gives it back for the next
file. A session that lost its connection is dropped, and the next checkout opens a new one.

Host keys are always checked against SFTP_KNOWN_HOSTS unless it says `none`. The client prefers AES-GCM:
benchmarks/sftp_bench.py --clients measured it 1.6x faster than asyncssh's default ChaCha20-Poly1305 on
these machines (AES-NI). Every failure becomes one of three errors with a message naming the server:
SftpUnavailable (the server cannot be used at all: unreachable, host key refused, authentication refused),
SftpConnectionLost (a session died in the middle of something: retried on a new one) and SftpFileError
(one path: missing, permission denied, not a regular file...).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import queue
import stat
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import asyncssh

T = TypeVar("T")

# Tried in this order; the rest of asyncssh's defaults follow, so a server offering only those still works.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
KNOWN_HOSTS_DISABLED = "none"


class SftpError(Exception):
    """Base of the intake's SFTP errors; the message says what failed, on which server and path."""


class SftpUnavailable(SftpError):
    """The server cannot be used at all (unreachable, host key refused, authentication refused): no file
    of the run can be transferred, so the run stops instead of failing every file the same way."""


class SftpRefused(SftpUnavailable):
    """The server was reached and refused us (host key, authentication, our key): never worth a retry."""


class SftpConnectionLost(SftpError):
    """The connection dropped, or the server stopped answering, in the middle of an operation."""


class SftpFileError(SftpError):
    """One path could not be read or changed: `reason` is short and stable (no such file, permission denied,
    not a regular file, ...), the message says everything."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def missing(self) -> bool:
        """The path is not there (the file, or a folder on its way)."""
        return self.reason in ("no such file", "no such path")


@dataclass(frozen=True)
class SftpConfig:
    host: str
    port: int
    username: str
    remote_dir: str
    private_key_file: str | None = None
    password: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)  # of an encrypted private key file
    known_hosts: str | None = None  # a file; None: ~/.ssh/known_hosts; KNOWN_HOSTS_DISABLED: not checked
    connect_timeout: float = 15.0
    io_timeout: float = 60.0  # seconds an SFTP request may wait for its answer

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def inbox_id(self) -> str:
        """How the transfer log names this inbox: one row per file per inbox."""
        return f"sftp://{self.username}@{self.host}:{self.port}{self.remote_dir}"


@dataclass(frozen=True)
class RemoteEntry:
    """One directory entry, as lstat sees it: a symlink is a symlink, never what it points to."""

    name: str
    kind: str  # file | dir | symlink | other | undecodable (a name that is not UTF-8)
    size: int
    mtime: dt.datetime
    permissions: int | None


def _entry(name: str, attrs: asyncssh.SFTPAttrs) -> RemoteEntry:
    mode = attrs.permissions
    if mode is not None and stat.S_ISLNK(mode):
        kind = "symlink"
    elif mode is not None and stat.S_ISDIR(mode):
        kind = "dir"
    elif mode is None or stat.S_ISREG(mode):
        kind = "file"
    else:
        kind = "other"
    if attrs.type == asyncssh.FILEXFER_TYPE_SYMLINK:
        kind = "symlink"
    mtime_ns = attrs.mtime_ns if attrs.mtime_ns is not None else (attrs.mtime or 0) * 1_000_000_000
    # Microseconds: what PostgreSQL keeps, so that a look read back from the log compares equal.
    mtime = dt.datetime.fromtimestamp(mtime_ns // 1000 / 1_000_000, dt.UTC)
    return RemoteEntry(name=name, kind=kind, size=int(attrs.size or 0), mtime=mtime, permissions=mode)


def _listed(raw_name: bytes, attrs: asyncssh.SFTPAttrs) -> RemoteEntry:
    try:
        return _entry(raw_name.decode("utf-8"), attrs)
    except UnicodeDecodeError:
        return replace(_entry(raw_name.decode("utf-8", "backslashreplace"), attrs), kind="undecodable")


def join(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}" if directory not in ("", ".") else name


def _file_error(exc: asyncssh.SFTPError, what: str, path: str, address: str) -> SftpFileError:
    reasons = {asyncssh.FX_NO_SUCH_FILE: "no such file", asyncssh.FX_PERMISSION_DENIED: "permission denied",
               asyncssh.FX_FILE_ALREADY_EXISTS: "already exists", asyncssh.FX_NO_SUCH_PATH: "no such path",
               asyncssh.FX_FAILURE: "failure"}
    reason = reasons.get(exc.code, "refused")
    detail = f" ({exc.reason})" if exc.reason and exc.reason.lower() != reason else ""
    return SftpFileError(f"{what} {path!r} on {address}: {reason}{detail}", reason)


class _Loop:
    """An event loop running in its own daemon thread; coroutines are submitted from other threads."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sftp-loop", daemon=True)
        self.thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self.submit(coroutine).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


class SftpSession:
    """One SSH connection and its SFTP channel. Used by one thread at a time (the pool sees to it)."""

    def __init__(self, pool: SftpPool, connection: asyncssh.SSHClientConnection, sftp: asyncssh.SFTPClient) -> None:
        self._pool, self._connection, self._sftp = pool, connection, sftp
        self.broken = False
        self.cipher = connection.get_extra_info("send_cipher")

    @property
    def address(self) -> str:
        return self._pool.config.address

    def _run(self, coroutine: Coroutine[Any, Any, T], what: str, path: str) -> T:
        return self._result(self._pool.loop.submit(asyncio.wait_for(coroutine, self._pool.config.io_timeout)),
                            what, path)

    def _result(self, future: Future[T], what: str, path: str) -> T:
        """The future's result, its failure turned into one of the intake's SFTP errors."""
        timeout = self._pool.config.io_timeout
        try:
            return future.result(timeout + 5)
        except asyncssh.SFTPError as exc:
            if isinstance(exc, asyncssh.SFTPConnectionLost):
                self.broken = True
                raise SftpConnectionLost(f"{what} {path!r} on {self.address}: connection lost ({exc.reason})") from exc
            raise _file_error(exc, what, path, self.address) from exc
        except TimeoutError as exc:
            self.broken = True
            future.cancel()
            raise SftpConnectionLost(f"{what} {path!r} on {self.address}: no answer within {timeout:g} s") from exc
        except (asyncssh.Error, OSError, EOFError) as exc:
            self.broken = True
            raise SftpConnectionLost(f"{what} {path!r} on {self.address}: connection lost "
                                     f"({type(exc).__name__}: {exc})") from exc

    def lstat(self, path: str) -> RemoteEntry:
        return _entry(path.rsplit("/", 1)[-1], self._run(self._sftp.lstat(path), "lstat", path))

    def scandir(self, path: str) -> list[RemoteEntry]:
        """The entries of a directory (not . and ..), with their lstat attributes. Names are read as bytes:
        one that is not UTF-8 (which asyncssh would refuse for the whole listing) is an entry of kind
        `undecodable`, its name shown with \\x escapes, to be recorded and never opened."""
        async def read() -> list[RemoteEntry]:
            return [_listed(bytes(n.filename), n.attrs) async for n in self._sftp.scandir(path.encode("utf-8"))
                    if n.filename not in (b".", b"..")]
        return self._run(read(), "list", path)

    def read_chunks(self, path: str, start: int, chunk_size: int, end: int | None = None) -> Iterator[bytes]:
        """The file's bytes from `start` to `end` (None: to its end), in chunks of `chunk_size`, the next chunk
        requested while the caller handles the current one. asyncssh splits each chunk into parallel SFTP
        reads. With `end` known, nothing is asked past it (a small file costs open, one read, close)."""
        handle = self._run(self._sftp.open(path, "rb", encoding=None), "open", path)
        offset = start

        def size_at(at: int) -> int:
            return chunk_size if end is None else min(chunk_size, end - at)

        try:
            if end is not None and offset >= end:
                return
            ahead = self._read_ahead(handle, size_at(offset), offset)
            while True:
                chunk = self._result(ahead, "read", path)
                if not chunk:
                    return
                offset += len(chunk)
                done = end is not None and offset >= end
                if not done:
                    ahead = self._read_ahead(handle, size_at(offset), offset)
                yield chunk
                if done:
                    return
        finally:
            if not self.broken:
                with suppress(SftpError):
                    self._run(handle.close(), "close", path)

    def read_whole(self, path: str, size: int) -> tuple[RemoteEntry, bytes]:
        """A small file in one hop to the event loop: its lstat, then (a regular file only: a symlink is never
        opened) open, one read of `size` bytes, close. The caller compares the lstat with what it expects."""
        return self.wait(self.start_read_whole(path, size), path)

    def start_read_whole(self, path: str, size: int) -> Future[tuple[RemoteEntry, bytes]]:
        """read_whole, started and not waited for: the caller does something else meanwhile (uploads the
        previous file), then `wait`s. asyncssh serves the requests of several callers on one session."""
        async def read() -> tuple[RemoteEntry, bytes]:
            entry = _entry(path.rsplit("/", 1)[-1], await self._sftp.lstat(path))
            if entry.kind != "file" or size == 0:
                return entry, b""
            async with self._sftp.open(path, "rb", encoding=None) as handle:
                return entry, await handle.read(size, 0)
        return self._pool.loop.submit(asyncio.wait_for(read(), self._pool.config.io_timeout))

    def wait(self, future: Future[T], path: str, what: str = "read") -> T:
        return self._result(future, what, path)

    def move_or_remove(self, path: str, expected: tuple[int, dt.datetime], target: str | None) -> tuple[str, str]:
        """In one hop: if `path` still has the size and mtime `expected`, rename it to `target` (a timestamp
        suffix when `target` exists: both kept) or, without a target, remove it. Returns (what was done:
        "moved", "removed" or "changed", the final target)."""
        async def finish() -> tuple[str, str]:
            entry = _entry(path, await self._sftp.lstat(path))
            if (entry.size, entry.mtime) != expected:
                return "changed", ""
            if target is None:
                await self._sftp.remove(path)
                return "removed", ""
            final = target
            try:
                await self._sftp.lstat(target)
                final = f"{target}.{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
            except asyncssh.SFTPNoSuchFile:
                pass
            await self._sftp.rename(path, final)
            return "moved", final
        return self._run(finish(), "move" if target else "remove", path)

    def _read_ahead(self, handle: asyncssh.SFTPClientFile, size: int, offset: int) -> Future[bytes]:
        return self._pool.loop.submit(asyncio.wait_for(handle.read(size, offset), self._pool.config.io_timeout))

    def makedirs(self, path: str) -> None:
        self._run(self._sftp.makedirs(path, exist_ok=True), "mkdir", path)

    def close(self) -> None:
        async def close() -> None:
            self._sftp.exit()
            self._connection.close()
            await self._connection.wait_closed()
        with suppress(Exception):
            self._pool.loop.run(close(), timeout=5)


class SftpPool:
    """Up to `size` persistent SFTP sessions to one server, opened on demand and reused across files."""

    def __init__(self, config: SftpConfig, size: int) -> None:
        self.config, self.size = config, size
        self.loop = _Loop()
        self._idle: queue.LifoQueue[SftpSession] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._open = 0
        self.connections_opened = 0
        self.connections_lost = 0

    def _connect_options(self) -> dict[str, Any]:
        c = self.config
        options: dict[str, Any] = {
            "username": c.username, "agent_path": None, "config": [], "connect_timeout": c.connect_timeout,
            "encryption_algs": [*PREFERRED_CIPHERS, *(a.decode() for a in
                                asyncssh.encryption.get_default_encryption_algs()
                                if a.decode() not in PREFERRED_CIPHERS)],
            "keepalive_interval": 30,
        }
        if c.known_hosts == KNOWN_HOSTS_DISABLED:
            options["known_hosts"] = None
        elif c.known_hosts:
            options["known_hosts"] = c.known_hosts
        options["client_keys"] = [c.private_key_file] if c.private_key_file else None
        if c.password:
            options["password"] = c.password
        if c.passphrase:
            options["passphrase"] = c.passphrase
        return options

    async def _open_session(self) -> tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]:
        connection = await asyncssh.connect(self.config.host, self.config.port, **self._connect_options())
        try:
            sftp = await connection.start_sftp_client()
        except BaseException:
            connection.close()
            raise
        return connection, sftp

    def connect(self) -> SftpSession:
        c = self.config
        try:
            connection, sftp = self.loop.run(self._open_session(), timeout=c.connect_timeout * 2 + 5)
        except asyncssh.HostKeyNotVerifiable as exc:
            where = c.known_hosts or "~/.ssh/known_hosts"
            raise SftpRefused(
                f"SFTP server {c.address}: host key refused, it is not the one {where} (SFTP_KNOWN_HOSTS) lists for "
                f"this host ({exc.reason}). Connection refused: a changed key may be an attacker in the middle; "
                "add the new key to SFTP_KNOWN_HOSTS only once its fingerprint is confirmed with the server's "
                "operator") from None
        except asyncssh.PermissionDenied as exc:
            how = "SFTP_PRIVATE_KEY_FILE" if c.private_key_file else "SFTP_PASSWORD"
            raise SftpRefused(f"SFTP server {c.address}: authentication of user {c.username!r} refused "
                                  f"({exc.reason}); check SFTP_USERNAME and {how}") from None
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
            hint = "" if c.passphrase else " (an encrypted key needs SFTP_PRIVATE_KEY_PASSPHRASE)"
            raise SftpRefused(f"SFTP_PRIVATE_KEY_FILE {c.private_key_file}: not a usable private key "
                              f"({exc}){hint}") from None
        except TimeoutError:
            raise SftpUnavailable(f"SFTP server {c.address}: no SSH handshake within {c.connect_timeout:g} s") from None
        except FileNotFoundError as exc:
            raise SftpUnavailable(f"SFTP settings name a missing file: {exc.filename}") from None
        except (asyncssh.Error, OSError) as exc:
            raise SftpUnavailable(f"SFTP server {c.address} unreachable: {type(exc).__name__}: {exc}") from None
        self.connections_opened += 1
        return SftpSession(self, connection, sftp)

    @contextmanager
    def session(self) -> Iterator[SftpSession]:
        """A session for the caller's thread alone, given back afterwards (or dropped when it broke)."""
        try:
            session = self._idle.get_nowait()
        except queue.Empty:
            session = self.connect()
            with self._lock:
                self._open += 1
        try:
            yield session
        finally:
            if session.broken:
                self.connections_lost += 1
                session.close()
                with self._lock:
                    self._open -= 1
            else:
                self._idle.put(session)

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                break
        self.loop.close()

    def __enter__(self) -> SftpPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
