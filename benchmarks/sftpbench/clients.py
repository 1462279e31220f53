"""--clients: the SFTP client libraries against each other, on the same servers, before any S3 or
database work: one session, one file at a time, bytes read and dropped.

    large   one big file read in 4 MiB reads (asyncssh splits each into parallel SFTP requests;
            paramiko's prefetch() keeps its own requests in flight)
    small   300 x 64 KiB: open, read whole, close (paramiko with prefetch())

Each library with the ciphers worth comparing: asyncssh with AES-GCM (what the intake prefers) and with
ChaCha20-Poly1305 (asyncssh's own default), paramiko with its default (AES-CTR + HMAC) and with AES-GCM.
And the intake's own client code (sftp_client.SftpPool: a session checked out by a thread, coroutines on
the pool's event loop thread) reading as SftpTransfer does: lstat, then read_chunks up to the size the
lstat gave (TransferSettings' chunk size, one read ahead).
CPU is this process's (time.process_time: every thread of it, paramiko's transport thread included).
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncssh

from sftpbench.workloads import MIB
from vault_pipeline.intake.sftp_client import SftpConfig, SftpPool
from vault_pipeline.intake.sftp_transfer import TransferSettings
from vault_pipeline_tests.sftpservers import SftpEndpoint

GCM = "aes128-gcm@openssh.com"
CHACHA = "chacha20-poly1305@openssh.com"
CHUNK = 4 * MIB


@dataclass(frozen=True)
class Measured:
    seconds: float
    cpu_s: float
    nbytes: int
    files: int


@dataclass(frozen=True)
class ClientResult:
    cipher: str | None
    large: Measured
    small: Measured


def _timed(read: Callable[[], tuple[int, int]]) -> Measured:
    started, cpu = time.perf_counter(), time.process_time()
    nbytes, files = read()
    return Measured(time.perf_counter() - started, time.process_time() - cpu, nbytes, files)


async def _asyncssh_session(endpoint: SftpEndpoint, cipher: str, large: str,
                            small: list[str]) -> ClientResult:
    async with asyncssh.connect(endpoint.host, endpoint.port, username=endpoint.username,
                                client_keys=[str(endpoint.private_key)], known_hosts=str(endpoint.known_hosts),
                                agent_path=None, config=[], encryption_algs=[cipher]) as conn, \
            conn.start_sftp_client() as sftp:
        async def read_large() -> tuple[int, int]:
            total = 0
            async with sftp.open(large, "rb") as f:
                while data := await f.read(CHUNK, total):
                    total += len(data)
            return total, 1

        async def read_small() -> tuple[int, int]:
            total = 0
            for path in small:
                async with sftp.open(path, "rb") as f:
                    total += len(await f.read())
            return total, len(small)

        measured = []
        for read in (read_large, read_small):
            started, cpu = time.perf_counter(), time.process_time()
            nbytes, files = await read()
            measured.append(Measured(time.perf_counter() - started, time.process_time() - cpu, nbytes, files))
        return ClientResult(conn.get_extra_info("send_cipher"), *measured)


def asyncssh_client(cipher: str) -> Callable[[SftpEndpoint, str, list[str]], ClientResult]:
    def run(endpoint: SftpEndpoint, large: str, small: list[str]) -> ClientResult:
        return asyncio.run(_asyncssh_session(endpoint, cipher, large, small))
    return run


def paramiko_client(cipher: str | None) -> Callable[[SftpEndpoint, str, list[str]], ClientResult]:
    def run(endpoint: SftpEndpoint, large: str, small: list[str]) -> ClientResult:
        import paramiko  # the bench extra's; only --clients needs it

        known = paramiko.HostKeys(str(endpoint.known_hosts))
        entry = known.lookup(f"[{endpoint.host}]:{endpoint.port}") or known.lookup(endpoint.host)
        if not entry:
            raise SystemExit(f"{endpoint.known_hosts} has no key for {endpoint.host}:{endpoint.port}")
        host_key = next(iter(entry.values()))
        transport = paramiko.Transport((endpoint.host, endpoint.port))
        if cipher:
            transport.get_security_options().ciphers = (cipher,)
        try:
            transport.connect(hostkey=host_key, username=endpoint.username,
                              pkey=paramiko.PKey.from_path(str(endpoint.private_key)))
            sftp = paramiko.SFTPClient.from_transport(transport)
            assert sftp is not None

            def read_large() -> tuple[int, int]:
                total = 0
                with sftp.open(large, "rb") as f:
                    f.prefetch()
                    while data := f.read(CHUNK):
                        total += len(data)
                return total, 1

            def read_small() -> tuple[int, int]:
                total = 0
                for path in small:
                    with sftp.open(path, "rb") as f:
                        f.prefetch()
                        total += len(f.read())
                return total, len(small)

            large_measured, small_measured = _timed(read_large), _timed(read_small)
            return ClientResult(transport.remote_cipher, large_measured, small_measured)
        finally:
            transport.close()
    return run


def intake_client(endpoint: SftpEndpoint, large: str, small: list[str]) -> ClientResult:
    chunk = next(f.default for f in dataclasses.fields(TransferSettings) if f.name == "chunk_size")
    config = SftpConfig(host=endpoint.host, port=endpoint.port, username=endpoint.username,
                        remote_dir=endpoint.remote_inbox, private_key_file=str(endpoint.private_key),
                        known_hosts=str(endpoint.known_hosts))
    with SftpPool(config, 1) as pool, pool.session() as session:
        def read(path: str) -> int:
            size = session.lstat(path).size
            return sum(len(c) for c in session.read_chunks(path, 0, chunk, end=size))

        def read_large() -> tuple[int, int]:
            return read(large), 1

        def read_small() -> tuple[int, int]:
            return sum(read(path) for path in small), len(small)

        return ClientResult(session.cipher, _timed(read_large), _timed(read_small))


CLIENTS: dict[str, Callable[[SftpEndpoint, str, list[str]], ClientResult]] = {
    "asyncssh aes128-gcm": asyncssh_client(GCM),
    "asyncssh chacha20-poly1305": asyncssh_client(CHACHA),
    "paramiko (default cipher), prefetch": paramiko_client(None),
    "paramiko aes128-gcm, prefetch": paramiko_client(GCM),
    "vault-pipeline SftpPool (lstat + read_chunks)": intake_client,
}


def summarize(results: list[ClientResult], large_bytes: int, small_files: int) -> dict[str, Any]:
    """Medians; a run that read fewer bytes or files than there are is an error, not a number."""
    short = [r for r in results if r.large.nbytes != large_bytes or r.small.files != small_files]
    if short:
        raise RuntimeError(f"a client read {short[0].large.nbytes} of {large_bytes} bytes, "
                           f"{short[0].small.files} of {small_files} files")
    large_gib = large_bytes / 2**30
    return {
        "cipher": results[0].cipher, "runs": len(results),
        "large_mib_per_s": round(statistics.median(large_bytes / MIB / r.large.seconds for r in results), 1),
        "large_cpu_s_per_gib": round(statistics.median(r.large.cpu_s / large_gib for r in results), 3),
        "small_files_per_s": round(statistics.median(small_files / r.small.seconds for r in results), 1),
        "small_cpu_ms_per_file": round(statistics.median(1000 * r.small.cpu_s / small_files for r in results), 3),
        "raw": [{"large_s": round(r.large.seconds, 3), "large_cpu_s": round(r.large.cpu_s, 3),
                 "small_s": round(r.small.seconds, 3), "small_cpu_s": round(r.small.cpu_s, 3)} for r in results],
    }


def compare_clients(endpoint: SftpEndpoint, large: str, small: list[str], *, large_bytes: int, runs: int,
                    log: Callable[[str], None]) -> dict[str, Any]:
    """Every client `runs` times, alternated (A B C D A B C D)."""
    results: dict[str, list[ClientResult]] = {name: [] for name in CLIENTS}
    for run in range(1, runs + 1):
        for name, client in CLIENTS.items():
            result = client(endpoint, large, small)
            results[name].append(result)
            log(f"{endpoint.flavour} {name} run {run} ({result.cipher}): "
                f"large {large_bytes / MIB / result.large.seconds:,.1f} MiB/s, "
                f"small {len(small) / result.small.seconds:,.1f} files/s")
    return {name: summarize(found, large_bytes, len(small)) for name, found in results.items()}
