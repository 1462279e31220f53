"""PostgreSQL restarted while a replication process copies (issue 12, item 6).

The session's PostgreSQL is shared by every test, so this module has its own EmbeddedPostgres, stopped and
started again on the same port while a worker process (Vault.start_worker) is copying a mix of small and
multipart objects. Whatever that run does (fail, or ride over the restart), the next run must leave every
object replicated once, nothing open and the journal whole.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from vault_pipeline.devstack.ports import find_free_port_block
from vault_pipeline.devstack.postgres import EmbeddedPostgres
from vault_pipeline.resources.tracking_db import close_shared_store
from vault_pipeline_tests.conftest import sql
from vault_pipeline_tests.faults import invariants
from vault_pipeline_tests.faults.conftest import Faulty

pytestmark = pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "postgres", find_free_port_block(1)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tracking_dsn(own_postgres: EmbeddedPostgres) -> Iterator[str]:
    """Overrides the suite's tracking database: this test's own server, which it may restart."""
    own_postgres.create_database("vault_restart")
    dsn = own_postgres.dsn("vault_restart")
    yield dsn
    close_shared_store(dsn)


def replicated(dsn: str) -> int:
    try:
        return sql(dsn, "SELECT count(*) FROM vault_secure.replication_status WHERE status = 'replicated'")[0][0]
    except psycopg.Error:
        return 0


def test_postgres_restarted_mid_run(faulty: Faulty, own_postgres: EmbeddedPostgres) -> None:
    vault = faulty.vault
    faulty.put_mix(small=24)
    vault.run_sensor()
    close_shared_store(vault.dsn)  # this process's pool would otherwise hold connections across the restart
    worker = vault.start_worker(REPLICATION_CONCURRENCY="4", VAULT_TEST_COPY_DELAY_S="0.4",
                                # the worker goes to the servers directly (no proxy in its process)
                                OVH_S3_ENDPOINT=faulty.hot.upstream, AWS_S3_ENDPOINT=faulty.cold.upstream)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and worker.poll() is None and replicated(vault.dsn) < 3:
        time.sleep(0.1)
    assert worker.poll() is None, "the worker finished before PostgreSQL could be restarted"
    own_postgres.stop()
    time.sleep(2.0)
    own_postgres.start()
    try:
        _out, err = worker.communicate(timeout=180)
    except Exception:
        worker.kill()
        raise
    print(f"worker exit {worker.returncode}; stderr tail:\n{err[-1500:]}")
    during = invariants.check_after_faulted_run(vault.dsn, vault.hot_bucket)
    print(f"after the restarted run: {during.statuses}; problems {during.problems[:5]}")
    unclear = [p for p in during.problems if "clear error_message" in p]
    assert not unclear, unclear
    time.sleep(5.5)  # VAULT_LEASE_SECONDS=5: a lease the dead connection could not give back expires
    faulty.recover_and_check()
