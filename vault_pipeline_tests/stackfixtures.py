"""Session-scoped real servers for the suite, each on free loopback ports in a temporary directory.

Load with `pytest_plugins = ["vault_pipeline_tests.stackfixtures"]`. Each server is started once per test
session, on first use, and stopped at its end; a crashed session takes them down too (they receive a
signal when their parent dies, see vault_pipeline/devstack/process.py). Tests isolate themselves with
their own buckets and databases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

from vault_pipeline.devstack.motosite import MotoSite
from vault_pipeline.devstack.ports import SITE_PORT_BLOCK, find_free_port_block
from vault_pipeline.devstack.postgres import EmbeddedPostgres
from vault_pipeline.devstack.process import DevStackError
from vault_pipeline.devstack.seaweed import SeaweedSite

HOT_KEYS = ("test-hot-admin", "test-hot-secret")
COLD_KEYS = ("test-cold-admin", "test-cold-secret")

Server = TypeVar("Server", EmbeddedPostgres, SeaweedSite, MotoSite)


def start_on_free_ports(make: Callable[[int], Server], block: int, attempts: int = 3) -> Server:
    """Start `make(base_port)` on a free block, with a new block if another process took a port of ours
    between the check and the server's bind (test sessions run side by side)."""
    for _ in range(attempts - 1):
        server = make(find_free_port_block(block))
        try:
            server.start()
            return server
        except DevStackError:
            continue
    server = make(find_free_port_block(block))
    server.start()
    return server


@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


def _served(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


# The tests' server need not survive a crash of the machine, only of its own processes (which the tests do:
# PostgreSQL restarted mid-run, runs SIGKILLed), and that the OS page cache covers: flushing to disk at each
# commit only adds the disk's latency to every test.
TEST_PG_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


@pytest.fixture(scope="session")
def pg_server(servers_dir: Path) -> Iterator[EmbeddedPostgres]:
    yield from _served(start_on_free_ports(
        lambda port: EmbeddedPostgres(servers_dir / "postgres", port, settings=TEST_PG_SETTINGS), 1))


@pytest.fixture(scope="session")
def hot_site(servers_dir: Path) -> Iterator[SeaweedSite]:
    yield from _served(start_on_free_ports(
        lambda port: SeaweedSite("hot", servers_dir / "hot", port, *HOT_KEYS), SITE_PORT_BLOCK))


@pytest.fixture(scope="session")
def cold_seaweed(servers_dir: Path) -> Iterator[SeaweedSite]:
    yield from _served(start_on_free_ports(
        lambda port: SeaweedSite("cold", servers_dir / "cold", port, *COLD_KEYS), SITE_PORT_BLOCK))


@pytest.fixture(scope="session")
def cold_moto(servers_dir: Path) -> Iterator[MotoSite]:
    yield from _served(start_on_free_ports(
        lambda port: MotoSite("cold-moto", port, *COLD_KEYS, log_path=servers_dir / "moto.log"), 1))


def stack_processes(marker: str) -> list[psutil.Process]:
    """Processes whose command line names the stack's directory (the runner, its servers, Dagster)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in process.info["cmdline"] or []):
                found.append(process)
        except psutil.Error:
            continue
    return found
