"""Fixed, documented ports of the `make run` stack, and free port blocks for tests.

`make run` uses:
    PostgreSQL      127.0.0.1:15432
    hot S3 site     127.0.0.1:19000  (SeaweedFS block 19000-19019)
    cold S3 site    127.0.0.1:19100  (SeaweedFS block 19100-19119; the moto flavour uses 19100 only)
    Dagster UI      127.0.0.1:3000
    Redis           127.0.0.1:16379  (`make run-cluster` only: the Celery broker and result backend)
    SFTP            127.0.0.1:12222  (asyncssh, serving .vault/sftp/)

A SeaweedFS site (`weed mini`) opens eleven TCP ports. Each is passed explicitly, bound to 127.0.0.1, and
taken from a block of SITE_PORT_BLOCK ports starting at the site's S3 port (`base`):
    base + 0   S3 API                 base + 10  S3 gRPC
    base + 1   master HTTP            base + 11  master gRPC
    base + 2   volume HTTP            base + 12  volume gRPC
    base + 3   filer HTTP             base + 13  filer gRPC
    base + 4   admin HTTP (no UI)     base + 14  admin gRPC
    base + 5   Prometheus metrics
    base + 6 .. base + 9 and base + 15 .. base + 19 are kept free for future components.
Nothing else listens: Iceberg, Lance and WebDAV are disabled, the pprof debug port is off by default, and
the filer and S3 Unix sockets live in a short temporary directory (see seaweed.py).

weed 4.48 quirk: its embedded maintenance worker dials the admin server at admin HTTP port + 10000 and
ignores `-admin.port.grpc`, so it cannot connect and logs a "connection refused" line every few seconds.
That worker only schedules vacuum/balance/erasure-coding tasks, which a dev stack does not need; keeping
every listener inside the block matters more than that noise.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from dataclasses import astuple, dataclass
from pathlib import Path

from vault_pipeline.devstack.process import DevStackError

LOOPBACK = "127.0.0.1"
POSTGRES_PORT = 15432
HOT_S3_PORT = 19000
COLD_S3_PORT = 19100
DAGSTER_UI_PORT = 3000
REDIS_PORT = 16379
SFTP_PORT = 12222
SITE_PORT_BLOCK = 20  # ports base .. base + 19 belong to one SeaweedFS site

# Confines find_free_port_block's default search to "LOW-HIGH" (HIGH exclusive). The test harness gives
# each pytest-xdist worker its own slice, so two workers never pick the same port in the window between
# one worker's check and its server's bind. Subprocesses inherit it.
PORT_RANGE_ENV = "VAULT_FREE_PORT_RANGE"

# A block handed out stays reserved in this process for this long, so that blocks picked one after the
# other before any server binds (a stack picks its PostgreSQL, hot, cold and SFTP ports first) never
# overlap. Long enough to cover a slow stack start, short enough that a long test session cannot run out.
RESERVATION_SECONDS = 600.0
_reserved: dict[int, float] = {}  # port -> monotonic expiry
_reserved_lock = threading.Lock()

# Random blocks for tests never overlap the fixed ports above, so a test run cannot take the ports that a
# `make run` started later needs (and the other way round is caught by the free-port check).
_FIXED_RANGES = (
    (POSTGRES_PORT, POSTGRES_PORT + 1),
    (HOT_S3_PORT, HOT_S3_PORT + SITE_PORT_BLOCK),
    (COLD_S3_PORT, COLD_S3_PORT + SITE_PORT_BLOCK),
    (DAGSTER_UI_PORT, DAGSTER_UI_PORT + 1),
    (SFTP_PORT, SFTP_PORT + 1),
)


@dataclass(frozen=True)
class SitePorts:
    """The ports of one `weed mini` process, derived from its S3 port (see the module docstring)."""

    s3: int
    master: int
    volume: int
    filer: int
    admin: int
    metrics: int
    s3_grpc: int
    master_grpc: int
    volume_grpc: int
    filer_grpc: int
    admin_grpc: int

    @classmethod
    def from_base(cls, base: int) -> SitePorts:
        return cls(s3=base, master=base + 1, volume=base + 2, filer=base + 3, admin=base + 4, metrics=base + 5,
                   s3_grpc=base + 10, master_grpc=base + 11, volume_grpc=base + 12, filer_grpc=base + 13,
                   admin_grpc=base + 14)

    def all(self) -> tuple[int, ...]:
        return astuple(self)


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux default


def _range_from_env() -> tuple[int, int] | None:
    value = os.environ.get(PORT_RANGE_ENV, "").strip()
    if not value:
        return None
    try:
        low_text, high_text = value.split("-")
        low, high = int(low_text), int(high_text)
    except ValueError:
        raise DevStackError(f"{PORT_RANGE_ENV}={value!r} is not a port range LOW-HIGH, e.g. 10000-20000") from None
    if not 1024 <= low < high <= 65536:
        raise DevStackError(f"{PORT_RANGE_ENV}={value!r}: expected 1024 <= LOW < HIGH <= 65536")
    return low, high


def worker_port_range(index: int, count: int, *, low: int = 10000) -> str:
    """The `PORT_RANGE_ENV` value of worker `index` of `count`: an equal slice of the ports below the
    ephemeral range."""
    ephemeral_low, _ = _ephemeral_range()
    width = (ephemeral_low - low) // max(count, 1)
    return f"{low + index * width}-{low + (index + 1) * width}"


def _reserve(base: int, size: int) -> bool:
    """Reserve base .. base+size-1 unless a port of it was handed out within RESERVATION_SECONDS."""
    now = time.monotonic()
    with _reserved_lock:
        for port in [p for p, expiry in _reserved.items() if expiry <= now]:
            del _reserved[port]
        if any(base + offset in _reserved for offset in range(size)):
            return False
        for offset in range(size):
            _reserved[base + offset] = now + RESERVATION_SECONDS
        return True


def find_free_port_block(size: int = SITE_PORT_BLOCK, *, low: int | None = None, high: int | None = None) -> int:
    """A base such that base .. base+size-1 are all free on 127.0.0.1 right now, and none was handed out by
    this process in the last RESERVATION_SECONDS (the servers for earlier picks may not have bound yet).

    By default the search stays below the kernel's ephemeral range: the servers themselves open many
    outgoing connections, and an outgoing connection could otherwise take a port of a block between this
    check and the server's bind. `PORT_RANGE_ENV` narrows it (one slice per test worker); within it the
    choice is random so that concurrent sessions rarely collide.
    """
    if low is None and high is None:
        low, high = _range_from_env() or (10000, None)
    low = 10000 if low is None else low
    if high is None:
        ephemeral_low, _ = _ephemeral_range()
        high = ephemeral_low if ephemeral_low - low > 50 * size else 65535
    rng = random.Random()
    for _ in range(1000):
        base = rng.randrange(low, high - size)
        if any(base < end and start < base + size for start, end in _FIXED_RANGES):
            continue
        if all(port_is_free(base + offset) for offset in range(size)) and _reserve(base, size):
            return base
    raise DevStackError(f"no block of {size} free ports found between {low} and {high}")
