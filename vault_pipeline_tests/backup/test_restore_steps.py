"""The restore's steps on real pg_dump/pg_restore (PostgreSQL 16 from pgserver) and the session server.

The source database has two schemas, a 400k-row table (its COPY and its indexes take long enough to be killed
in the middle), a foreign key, indexes, an identity column, a free sequence, a row-level security policy and
40 small tables (so that pre-data has many statements to be killed among). Every report and line checked here
comes from a real pg_restore run: no output is written by hand.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from vault_pipeline.backup.pg_tools import (
    PgToolError,
    libpq_env,
    pg_binary,
    require_not_older_than_server,
    server_major,
    tool_major,
)
from vault_pipeline.backup.restore_steps import (
    RESTORE_APPLICATION,
    RestoreError,
    SectionReport,
    TargetNotEmpty,
    count_rows,
    drop_database,
    ensure_target_database,
    restore_section,
    toc_items,
)
from vault_pipeline.devstack.postgres import pg_bin_dir
from vault_pipeline_tests.conftest import sql, unique

PASSWORD = "S3cret-pw-never-shown"  # the server trusts loopback: any password connects, none may leak
ORDERS = 400_000

SOURCE_SQL = f"""
CREATE SCHEMA app;
CREATE SCHEMA audit;
CREATE TABLE app.customers (id bigserial PRIMARY KEY, name text NOT NULL, tenant text NOT NULL);
CREATE TABLE app.orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL, amount numeric(12, 2) NOT NULL,
                         note text);
CREATE TABLE audit.events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(),
                           what text);
CREATE SEQUENCE audit.ticket_seq;
DO $$ BEGIN FOR i IN 1..40 LOOP
  EXECUTE format('CREATE TABLE audit.%I (id int PRIMARY KEY, what text)', 'log_' || i);
  EXECUTE format('INSERT INTO audit.%I VALUES (1, %L)', 'log_' || i, 'entry ' || i);
END LOOP; END $$;
INSERT INTO app.customers (name, tenant) SELECT 'c' || g, 't' || (g % 7) FROM generate_series(1, 2000) g;
INSERT INTO app.orders (customer_id, amount, note)
  SELECT 1 + g % 2000, g * 0.5, repeat('x', 40) FROM generate_series(1, {ORDERS}) g;
INSERT INTO audit.events (what) SELECT 'e' || g FROM generate_series(1, 3000) g;
ALTER TABLE app.orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES app.customers (id);
CREATE INDEX orders_customer_idx ON app.orders (customer_id);
CREATE INDEX events_what_idx ON audit.events (what);
ALTER TABLE app.customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_only ON app.customers USING (tenant = current_user);
SELECT setval('audit.ticket_seq', 42);
"""


@dataclass
class Source:
    dsn: str
    dump: Path
    counts: dict[str, int]


@pytest.fixture(scope="module", autouse=True)
def postgres_programs_on_path() -> Iterator[None]:
    """pg_dump / pg_restore found on PATH, as on a server with PostgreSQL's client installed (pgserver's)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{pg_bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}")
        yield


@pytest.fixture(scope="module")
def source(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    name = unique("restore_source").replace("-", "_")
    pg_server.create_database(name)
    dsn = pg_server.dsn(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SOURCE_SQL)
        tables = [f"{schema}.{table}" for schema, table in conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema IN ('app', 'audit') ORDER BY 1, 2")]
    dump = tmp_path_factory.mktemp("dump") / "source.dump"
    subprocess.run([pg_binary("pg_dump"), "--format=custom", f"--file={dump}", f"--dbname={dsn}"], check=True,
                   capture_output=True, timeout=120)
    yield Source(dsn, dump, count_rows(dsn, tables))
    pg_server.drop_database(name)


@pytest.fixture
def target(pg_server: Any) -> Iterator[str]:
    """The DSN (with a password) of a database that does not exist yet; dropped after the test."""
    name = unique("restored").replace("-", "_")
    yield f"postgresql://postgres:{PASSWORD}@127.0.0.1:{pg_server.port}/{name}"
    pg_server.drop_database(name)


def restore(source: Source, target: str, *, jobs: int, on_line: Callable[[str, float], None] | None = None,
            ) -> list[SectionReport]:
    ensure_target_database(target, replace=False)
    return [restore_section(source.dump, target, section, jobs=jobs, on_line=on_line)  # type: ignore[arg-type]
            for section in ("pre-data", "data", "post-data")]


def post_data_objects(dsn: str) -> dict[str, list[str]]:
    return {
        "constraints": [row[0] for row in sql(dsn, "SELECT conname FROM pg_constraint WHERE contype IN ('p', 'f')"
                                                   " AND connamespace::regnamespace::text IN ('app', 'audit')"
                                                   " ORDER BY 1")],
        "indexes": [row[0] for row in sql(dsn, "SELECT indexname FROM pg_indexes WHERE schemaname IN ('app', 'audit')"
                                               " ORDER BY 1")],
        "policies": [f"{row[0]} {row[1]}" for row in sql(dsn, "SELECT tablename, policyname FROM pg_policies")],
        "rls": [row[0] for row in sql(dsn, "SELECT relname FROM pg_class WHERE relrowsecurity ORDER BY 1")],
    }


def user_schemas(dsn: str) -> list[str]:
    return [row[0] for row in sql(dsn, "SELECT nspname FROM pg_namespace WHERE nspname IN ('app', 'audit')")]


class PgRestoreKiller:
    """An on_line hook that SIGKILLs the running pg_restore (and its -j workers) at the first line `when`
    accepts. The leader's pid is taken at its first line, so the kill itself costs one system call."""

    def __init__(self, when: Callable[[str], bool]) -> None:
        self.when = when
        self.leader: psutil.Process | None = None
        self.killed_at: str | None = None
        self.lines: list[str] = []

    def __call__(self, line: str, at: float) -> None:
        self.lines.append(line)
        if self.leader is None:
            self.leader = next(p for p in psutil.Process().children() if p.name() == "pg_restore")
        if self.killed_at is None and self.when(line):
            self.killed_at = line
            workers = self.leader.children()
            for process in [self.leader, *workers]:  # the leader first: it would exit 1 on a worker's death
                process.kill()


def test_the_dump_list_names_each_item_with_its_schema(source: Source) -> None:
    by_kind: dict[str, set[str]] = {}
    for item in toc_items(source.dump):
        by_kind.setdefault(item.kind, set()).add(item.qualified)
    assert {"app", "audit"} <= by_kind["SCHEMA"]
    assert {"app.orders", "audit.events", "audit.log_40"} <= by_kind["TABLE DATA"]
    assert "app.orders_customer_idx" in by_kind["INDEX"]
    assert "app.orders orders_pkey" in by_kind["CONSTRAINT"]
    assert by_kind["FK CONSTRAINT"] == {"app.orders orders_customer_fk"}
    assert {"audit.ticket_seq", "app.orders_id_seq"} <= by_kind["SEQUENCE SET"]
    assert by_kind["POLICY"] == {"app.customers tenant_only"}


@pytest.mark.parametrize("jobs", [1, 2])
def test_three_steps_restore_the_source_with_timed_items(source: Source, target: str, jobs: int) -> None:
    lines: list[str] = []
    pre, data, post = restore(source, target, jobs=jobs, on_line=lambda line, at: lines.append(line))

    assert count_rows(target, list(source.counts)) == source.counts
    objects = post_data_objects(target)
    assert objects == post_data_objects(source.dsn)
    assert "orders_customer_fk" in objects["constraints"] and "orders_customer_idx" in objects["indexes"]
    assert objects["policies"] == ["customers tenant_only"] and objects["rls"] == ["customers"]
    assert sql(target, "SELECT last_value FROM audit.ticket_seq") == [(42,)]
    assert sql(target, "SELECT last_value FROM app.orders_id_seq") == [(ORDERS,)]
    # Which parser ran: -j output has launching/finished lines, serial output has none.
    assert any("launching item" in line for line in lines) == (jobs > 1)
    assert (pre.jobs, data.jobs, post.jobs) == (1, jobs, jobs)

    kinds = {(item.kind, item.name) for report in (pre, data, post) for item in report.items}
    assert {("TABLE", "app.orders"), ("TABLE DATA", "app.orders"), ("TABLE DATA", "audit.log_40"),
            ("SEQUENCE SET", "audit.ticket_seq"), ("INDEX", "app.orders_customer_idx"),
            ("CONSTRAINT", "app.orders orders_pkey"), ("FK CONSTRAINT", "app.orders orders_customer_fk"),
            ("POLICY", "app.customers tenant_only")} <= kinds
    for report in (pre, data, post):
        assert all(item.seconds >= 0 for item in report.items)
        # Items overlap only with -j: their sum fits in the wall time times the workers.
        assert sum(item.seconds for item in report.items) <= report.seconds * report.jobs + 0.01
        assert sum(report.totals_by_kind().values()) == pytest.approx(sum(i.seconds for i in report.items))
    assert data.slowest(1)[0].name == "app.orders"  # 400k rows against a few thousand
    assert data.counts_by_kind()["TABLE DATA"] == 43 and data.counts_by_kind()["SEQUENCE SET"] == 4
    assert data.totals_by_kind()["TABLE DATA"] > 0 and post.totals_by_kind()["INDEX"] > 0
    assert post.counts_by_kind()["FK CONSTRAINT"] == 1

    assert SectionReport.from_dict(json.loads(json.dumps(post.as_dict()))) == post
    table = post.markdown(limit=3).splitlines()
    assert table[:2] == ["| kind | item | seconds |", "|---|---|---:|"]
    shown = [float(row.rsplit("|", 2)[1]) for row in table[2:5]]
    assert shown == sorted(shown, reverse=True) and table[5].startswith(f"| ... | {len(post.items) - 3} more items")


def test_the_data_step_run_twice_loads_each_row_once(source: Source, target: str) -> None:
    ensure_target_database(target, replace=False)
    restore_section(source.dump, target, "pre-data")
    restore_section(source.dump, target, "data", jobs=2)
    again = restore_section(source.dump, target, "data", jobs=2)
    assert "emptied 43 tables before loading" in again.notes
    assert count_rows(target, list(source.counts)) == source.counts
    restore_section(source.dump, target, "post-data", jobs=2)  # the unique keys hold: no row is there twice
    with pytest.raises(RestoreError, match="post-data has run"):
        restore_section(source.dump, target, "data", jobs=2)


@pytest.mark.slow
def test_a_data_step_whose_process_was_killed_is_run_again_without_duplicates(source: Source, target: str) -> None:
    """The step's process dies (as a Dagster step process may) mid-COPY; its pg_restore lives on, orphaned.
    The re-executed step ends the orphan's sessions, empties the tables and loads them once."""
    ensure_target_database(target, replace=False)
    restore_section(source.dump, target, "pre-data")
    script = ("import os, sys\nfrom vault_pipeline.backup.restore_steps import restore_section\n"
              "restore_section(sys.argv[1], os.environ['TARGET'], 'data', jobs=2,"
              " on_line=lambda line, at: print(line, flush=True))\n")
    step = subprocess.Popen([sys.executable, "-c", script, str(source.dump)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "TARGET": target})
    assert step.stdout is not None
    seen = []
    for line in step.stdout:
        seen.append(line)
        if "finished item" in line and "TABLE DATA events" in line:
            break
    orphans = psutil.Process(step.pid).children(recursive=True)
    assert {p.name() for p in orphans} == {"pg_restore"}  # the leader and its two workers
    os.kill(step.pid, signal.SIGKILL)
    step.wait()
    assert not any("TABLE DATA orders" in line and "finished item" in line for line in seen), \
        "the big table was loaded before the kill: nothing was killed mid-COPY"
    assert count_rows(target, ["audit.events"]) == {"audit.events": 3000}  # committed: loading again must not add

    again = restore_section(source.dump, target, "data", jobs=2)

    _gone, alive = psutil.wait_procs(orphans, timeout=30)
    assert not alive, f"pg_restore outlived the re-executed step: {alive}"
    assert count_rows(target, list(source.counts)) == source.counts  # after the orphan is gone: it added nothing
    assert "emptied 43 tables before loading" in again.notes


def test_a_leftover_restore_session_is_ended_before_the_tables_are_emptied(source: Source, target: str) -> None:
    """A killed attempt's session mid-transaction holds a lock on a table: the step must not wait on it forever
    nor let it commit afterwards."""
    ensure_target_database(target, replace=False)
    restore_section(source.dump, target, "pre-data")
    leftover = psycopg.connect(f"{target}?application_name={RESTORE_APPLICATION}")
    leftover.execute("INSERT INTO app.orders (customer_id, amount) VALUES (1, 1)")  # uncommitted, row lock held
    try:
        report = restore_section(source.dump, target, "data", jobs=2)
        with pytest.raises(psycopg.OperationalError):  # ended: its row never commits
            leftover.commit()
    finally:
        leftover.close()
    assert "ended 1 pg_restore sessions left on the target by an earlier run" in report.notes
    assert count_rows(target, list(source.counts)) == source.counts


@pytest.mark.slow
def test_a_killed_pre_data_step_leaves_nothing_and_a_rerun_after_success_does_nothing(
        source: Source, target: str) -> None:
    ensure_target_database(target, replace=False)
    killer = PgRestoreKiller(lambda line: 'creating TABLE "audit.log_5"' in line)
    with pytest.raises(PgToolError, match="pre-data was killed by signal 9"):
        restore_section(source.dump, target, "pre-data", on_line=killer)
    assert killer.killed_at
    assert user_schemas(target) == []  # one transaction: no half schema

    restore_section(source.dump, target, "pre-data")
    assert sorted(user_schemas(target)) == ["app", "audit"]
    again = restore_section(source.dump, target, "pre-data")  # its op re-executed after it had committed
    assert again.items == [] and "already restored" in again.notes[-1]


@pytest.mark.slow
def test_a_killed_post_data_step_is_run_again_and_so_is_a_finished_one(source: Source, target: str) -> None:
    ensure_target_database(target, replace=False)
    restore_section(source.dump, target, "pre-data")
    restore_section(source.dump, target, "data", jobs=2)
    killer = PgRestoreKiller(lambda line: "finished item" in line and " CONSTRAINT " in line)
    with pytest.raises(PgToolError, match="post-data was killed by signal 9"):
        restore_section(source.dump, target, "post-data", jobs=2, on_line=killer)
    half = post_data_objects(target)
    assert half["constraints"] and "orders_customer_fk" not in half["constraints"]  # killed in the middle

    restore_section(source.dump, target, "post-data", jobs=2)  # drops what the killed one made, makes all
    expected = post_data_objects(source.dsn)
    assert post_data_objects(target) == expected
    twice = restore_section(source.dump, target, "post-data", jobs=2)
    assert post_data_objects(target) == expected
    assert any(item.kind == "DROP FK CONSTRAINT" for item in twice.items)
    assert count_rows(target, list(source.counts)) == source.counts


def test_a_target_that_is_not_empty_is_refused_unless_replaced(source: Source, target: str) -> None:
    assert ensure_target_database(target, replace=False, restore_id="run-1").startswith("created database")
    assert ensure_target_database(target, replace=False, restore_id="run-1").endswith("exists and is empty")
    restore_section(source.dump, target, "pre-data")
    with pytest.raises(TargetNotEmpty, match="replace: true") as refused:
        ensure_target_database(target, replace=False)
    assert "table app.orders" in str(refused.value) and PASSWORD not in str(refused.value)
    assert user_schemas(target)  # refused: untouched

    # The same restore's re-executed step goes on; another restore is refused.
    assert "already this restore's target" in ensure_target_database(target, replace=False, restore_id="run-1")
    with pytest.raises(TargetNotEmpty):
        ensure_target_database(target, replace=False, restore_id="run-2")
    holder = psycopg.connect(target)  # replace ends the sessions on it
    try:
        assert ensure_target_database(target, replace=True).startswith("dropped database")
    finally:
        holder.close()
    assert user_schemas(target) == []
    restore_section(source.dump, target, "pre-data")
    with pytest.raises(RestoreError, match="refusing to restore into 'postgres'"):
        ensure_target_database(target.rsplit("/", 1)[0] + "/postgres", replace=True)

    with pytest.raises(RestoreError, match="ensure_target_database did not make it"):
        drop_database(source.dsn)  # a database the restore did not make stays
    assert drop_database(target).startswith("dropped database")
    assert drop_database(target).endswith("was not there")


@pytest.mark.parametrize("section", ["pre-data", "data", "post-data"])
def test_no_step_touches_a_database_that_was_not_prepared_as_a_restore_target(source: Source, section: str) -> None:
    with pytest.raises(RestoreError, match=f"not prepared by ensure_target_database: the {section} step refuses"):
        restore_section(source.dump, source.dsn, section)  # type: ignore[arg-type]
    assert count_rows(source.dsn, list(source.counts)) == source.counts
    assert "orders_customer_fk" in post_data_objects(source.dsn)["constraints"]


def test_the_password_is_in_no_command_line_and_no_message(source: Source, target: str, pg_server: Any,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_target_database(target, replace=False)
    # A pg_restore on PATH that writes down its arguments and environment, then runs the real one: what the
    # process was given, read without racing its exit.
    recorded = tmp_path / "recorded"
    recorded.mkdir()
    wrapper = tmp_path / "bin" / "pg_restore"
    wrapper.parent.mkdir()
    wrapper.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {recorded}/argv\nenv > {recorded}/env\n"
                       f"exec {pg_bin_dir()}/pg_restore \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")

    # post-data on an empty database: pg_restore itself fails (its tables are not there).
    with pytest.raises(PgToolError, match=r"post-data failed \(exit 1\)") as failed:
        restore_section(source.dump, target, "post-data")
    command = (recorded / "argv").read_text().splitlines()
    environment = dict(line.split("=", 1) for line in (recorded / "env").read_text().splitlines() if "=" in line)
    assert not any(PASSWORD in arg for arg in command) and environment["PGPASSWORD"] == PASSWORD
    assert environment.get("PGAPPNAME") is None and any("application_name=vault-pg-restore" in a for a in command)

    errors = [failed.value]
    for attempt in (
        lambda: restore_section(source.dump, target, "data"),  # before pre-data
        lambda: count_rows(target, ["app.missing"]),
        lambda: ensure_target_database(target.replace(f":{pg_server.port}/", ":1/"), replace=False),
        lambda: ensure_target_database(f"postgresql://postgres:{PASSWORD}@127.0.0.1:{pg_server.port}x/db",
                                       replace=False),
        lambda: server_major(f"postgresql+psycopg2://postgres:{PASSWORD}@127.0.0.1:1/db"),
    ):
        with pytest.raises((RestoreError, PgToolError)) as caught:
            attempt()
        errors.append(caught.value)
    messages = [f"{error} {error!r} {error.__cause__!r} {error.__context__!r}" for error in errors]
    assert all(PASSWORD not in message for message in messages), messages
    assert "pre-data step first" in str(errors[1]) and "app.missing is not in" in str(errors[2])


def test_libpq_env_takes_a_sqlalchemy_url_and_keeps_the_password_out_of_the_conninfo(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST", "elsewhere.invalid")  # inherited: must not redirect the program
    env, conninfo = libpq_env("postgresql+psycopg2://vault:p%40ss@db.example:6543/dagster?sslmode=require")
    assert env["PGPASSWORD"] == "p@ss" and "PGHOST" not in env and "PATH" in env
    assert "p@ss" not in conninfo and "pass" not in conninfo
    assert dict(part.split("=") for part in conninfo.split()) == {
        "user": "vault", "host": "db.example", "port": "6543", "dbname": "dagster", "sslmode": "require"}


def test_programs_are_found_and_one_older_than_the_server_is_refused(pg_server: Any, tmp_path: Path) -> None:
    assert Path(pg_binary("pg_restore")).is_file()
    assert tool_major(pg_binary("pg_dump")) == server_major(pg_server.dsn()) == 16
    with pytest.raises(PgToolError, match=f"VAULT_PG_BIN_DIR={tmp_path} has no executable pg_dump"):
        pg_binary("pg_dump", str(tmp_path))
    old = tmp_path / "pg_dump"  # a real program answering like PostgreSQL 12's pg_dump
    old.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 12.22'\n")
    old.chmod(0o755)
    assert pg_binary("pg_dump", str(tmp_path)) == str(old)
    refused = r"pg_dump is PostgreSQL 12, older than the server \(PostgreSQL 16\): set VAULT_PG_BIN_DIR"
    with pytest.raises(PgToolError, match=refused):
        require_not_older_than_server(str(old), pg_server.dsn())
    assert require_not_older_than_server(pg_binary("pg_dump"), pg_server.dsn()) == (16, 16)


def test_without_the_setting_or_the_programs_on_path_the_error_names_the_setting(monkeypatch: pytest.MonkeyPatch,
                                                                                tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PgToolError, match="pg_restore is not on PATH: set VAULT_PG_BIN_DIR"):
        pg_binary("pg_restore")
