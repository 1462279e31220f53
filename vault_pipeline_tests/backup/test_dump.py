"""dump_database against pgserver's PostgreSQL and pg_dump: counts of the dump's own snapshot, and a spool that
fills up failing at once, naming itself, instead of leaving pg_dump blocked on its pipe."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from vault_pipeline.backup.dump import dump_database
from vault_pipeline.backup.pg_tools import PgToolError
from vault_pipeline.devstack.postgres import pg_bin_dir
from vault_pipeline_tests.conftest import fresh_database


@pytest.fixture
def source(pg_server: Any) -> Iterator[str]:
    for dsn in fresh_database(pg_server, "dump"):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE x AS SELECT i, repeat('y', 200) AS pad FROM generate_series(1, 200000) i")
        yield dsn


def test_a_dump_holds_its_counts_and_a_full_spool_fails_at_once(source: str, tmp_path: Path) -> None:
    dump = dump_database("tracking", source, tmp_path / "ok", bin_dir=pg_bin_dir())
    assert dump.row_counts == {"public.x": 200_000} and dump.size == dump.path.stat().st_size > 0
    assert dump.pg_dump_version.startswith("pg_dump (PostgreSQL) ") and dump.journal == []

    full = tmp_path / "full"
    full.mkdir()
    (full / "tracking.dump").symlink_to("/dev/full")  # every write: ENOSPC
    started = time.monotonic()
    with pytest.raises(PgToolError, match=r"writing the tracking dump to .* failed: .*No space left on device"):
        dump_database("tracking", source, full, bin_dir=pg_bin_dir(), timeout_seconds=120)
    assert time.monotonic() - started < 60  # pg_dump ended on the closed pipe, not at the timeout
