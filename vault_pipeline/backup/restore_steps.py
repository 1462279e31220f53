"""Restoring a `pg_dump -Fc` backup in steps that can each be re-run after a crash (Dagster re-executes a
failed op alone). Plain Python: no Dagster here.

1. `ensure_target_database`: the target exists and is empty (or `replace` drops and re-creates it).
2. `restore_section(..., "pre-data")`: schemas, tables, sequences in ONE transaction: all or nothing. Run
   again after it committed, it sees every table there and does nothing.
3. `restore_section(..., "data")`: first empties every table the dump has data for (one TRUNCATE; there are
   no foreign keys yet), so an attempt after a killed one starts clean instead of loading rows twice.
4. `restore_section(..., "post-data")`: `--clean --if-exists` drops what a killed attempt already made
   (indexes, constraints, policies) before making it again. Verified with -j on PostgreSQL 16.
Every step first ends the sessions a killed attempt's pg_restore may still hold on the target (its workers
outlive it, and an orphaned pg_restore would keep loading after our TRUNCATE). And every step refuses a database
that ensure_target_database did not mark as a restore target (its comment): emptying tables or dropping
constraints is for a restore's own database, never for a live one named by mistake.

Each step times pg_restore's items from its -v output (see ItemTimer) into a SectionReport.
Large objects are not handled (the tracking database has none): a second data attempt would fail on them.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql

from vault_pipeline.backup.dump import row_count
from vault_pipeline.backup.pg_tools import (
    OnLine,
    PgToolError,
    dsn_params,
    libpq_env,
    normalized_dsn,
    pg_binary,
    redact,
    run_logged,
    with_database,
)
from vault_pipeline.replication.report import md_escape

Section = Literal["pre-data", "data", "post-data"]
SECTIONS: tuple[Section, ...] = ("pre-data", "data", "post-data")
REPORT_KINDS = ("TABLE DATA", "INDEX", "CONSTRAINT", "FK CONSTRAINT", "SEQUENCE SET")
OTHER = "other"
# pg_restore's sessions say who they are, so a later attempt can end those of a killed one.
RESTORE_APPLICATION = "vault-pg-restore"
MAINTENANCE_DATABASE = "postgres"
NEVER_TARGETS = ("postgres", "template0", "template1")
TERMINATE_WAIT_MS = 10_000
# The comment ensure_target_database puts on the target database; data and pre-data require it.
RESTORE_MARK = "vault-pipeline restore target: "
# A step's own statements (TRUNCATE) wait this long for a lock another session holds on the target, then fail.
LOCK_TIMEOUT = "60s"

# pg_dump's object kinds ("desc") of more than one word; the rest are one word (TABLE, INDEX, POLICY, ...).
_MULTIWORD_KINDS = tuple(sorted((
    "ACCESS METHOD", "BLOB METADATA", "CHECK CONSTRAINT", "DATABASE PROPERTIES", "DEFAULT ACL", "EVENT TRIGGER",
    "FK CONSTRAINT", "FOREIGN DATA WRAPPER", "FOREIGN SERVER", "FOREIGN TABLE", "INDEX ATTACH", "LARGE OBJECT",
    "MATERIALIZED VIEW", "MATERIALIZED VIEW DATA", "OPERATOR CLASS", "OPERATOR FAMILY", "PROCEDURAL LANGUAGE",
    "PUBLICATION TABLE", "PUBLICATION TABLES IN SCHEMA", "ROW SECURITY", "SECURITY LABEL", "SEQUENCE OWNED BY",
    "SEQUENCE SET", "SHELL TYPE", "STATISTICS DATA", "SUBSCRIPTION TABLE", "TABLE ATTACH", "TABLE DATA",
    "TEXT SEARCH CONFIGURATION", "TEXT SEARCH DICTIONARY", "TEXT SEARCH PARSER", "TEXT SEARCH TEMPLATE",
    "USER MAPPING"), key=len, reverse=True))


class RestoreError(RuntimeError):
    """A restore step cannot go on. The message says why and never holds a password."""


class TargetNotEmpty(RestoreError):
    pass


# --- the dump's table of contents -----------------------------------------------------------------------------

@dataclass(frozen=True)
class TocItem:
    """One line of `pg_restore -l`, e.g. `2568; 0 16397 TABLE DATA app orders postgres`."""

    dump_id: int
    kind: str  # "TABLE DATA", "INDEX", "CONSTRAINT", "FK CONSTRAINT", "SEQUENCE SET", "POLICY", "TABLE", ...
    schema: str  # "" for objects outside a schema
    name: str  # pg_dump's tag: "orders", or "orders orders_pkey" for a constraint (table, then constraint)

    @property
    def qualified(self) -> str:
        """As pg_restore -v names it: "app.orders", "app.orders orders_pkey"."""
        return f"{self.schema}.{self.name}" if self.schema else self.name


_TOC_LINE = re.compile(r"^(\d+); \d+ \d+ (.*)$")


def split_kind(text: str) -> tuple[str, str]:
    """("FK CONSTRAINT", "orders orders_customer_id_fkey") from "FK CONSTRAINT orders orders_customer_id_fkey"."""
    for kind in _MULTIWORD_KINDS:
        if text.startswith(kind + " "):
            return kind, text[len(kind) + 1:]
    kind, _, rest = text.partition(" ")
    return kind, rest


def parse_toc(listing: str) -> list[TocItem]:
    items = []
    for line in listing.splitlines():
        found = _TOC_LINE.match(line)
        if not found:  # comments (";") and blank lines
            continue
        kind, rest = split_kind(found.group(2))
        words = rest.split(" ")  # schema, the tag's words, owner (empty for some kinds: a trailing space)
        schema = "" if words[0] == "-" else words[0]
        name = " ".join(words[1:-1]) if len(words) > 2 else " ".join(words[1:])
        items.append(TocItem(int(found.group(1)), kind, schema, name))
    return items


def toc_items(dump_path: Path | str, *, bin_dir: str | None = None) -> list[TocItem]:
    """The items of a custom-format dump, in its order (`pg_restore -l`)."""
    completed = subprocess.run([pg_binary("pg_restore", bin_dir), "--list", str(dump_path)], capture_output=True,
                               text=True, timeout=300, check=False)
    if completed.returncode != 0:
        raise PgToolError(f"pg_restore --list {dump_path} failed (exit {completed.returncode}): "
                          f"{completed.stderr.strip()[-1000:]}")
    return parse_toc(completed.stdout)


# --- the duration report --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RestoreItem:
    kind: str
    name: str
    seconds: float


def report_kind(kind: str) -> str:
    return kind if kind in REPORT_KINDS else OTHER


@dataclass
class SectionReport:
    section: str
    seconds: float  # the step's wall time, emptying tables and reading the dump's list included
    items: list[RestoreItem]
    jobs: int  # 1 when pg_restore ran without -j
    notes: list[str] = field(default_factory=list)

    def totals_by_kind(self) -> dict[str, float]:
        """Seconds per kind (TABLE DATA, INDEX, CONSTRAINT, FK CONSTRAINT, SEQUENCE SET, other). With jobs > 1
        items overlap: the sum may exceed the step's wall time."""
        totals = dict.fromkeys((*REPORT_KINDS, OTHER), 0.0)
        for item in self.items:
            totals[report_kind(item.kind)] += item.seconds
        return totals

    def counts_by_kind(self) -> dict[str, int]:
        counts = dict.fromkeys((*REPORT_KINDS, OTHER), 0)
        for item in self.items:
            counts[report_kind(item.kind)] += 1
        return counts

    def slowest(self, limit: int | None = None) -> list[RestoreItem]:
        ranked = sorted(self.items, key=lambda item: (-item.seconds, item.kind, item.name))
        return ranked if limit is None else ranked[:limit]

    def markdown(self, limit: int = 20) -> str:
        """A table of the items, slowest first; the ones past `limit` summed on a last row."""
        rows = ["| kind | item | seconds |", "|---|---|---:|"]
        rows += [f"| {item.kind} | {md_escape(item.name)} | {item.seconds:.3f} |" for item in self.slowest(limit)]
        rest = self.items and self.slowest()[limit:]
        if rest:
            rows.append(f"| ... | {len(rest)} more items | {sum(item.seconds for item in rest):.3f} |")
        return "\n".join(rows)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able; `totals` is derived (from_dict ignores it)."""
        return {"section": self.section, "seconds": self.seconds, "jobs": self.jobs, "notes": list(self.notes),
                "items": [{"kind": i.kind, "name": i.name, "seconds": i.seconds} for i in self.items],
                "totals": self.totals_by_kind()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SectionReport:
        return cls(section=str(data["section"]), seconds=float(data["seconds"]), jobs=int(data["jobs"]),
                   notes=[str(note) for note in data.get("notes", [])],
                   items=[RestoreItem(str(i["kind"]), str(i["name"]), float(i["seconds"])) for i in data["items"]])


# Workers and leader share stderr and write the "pg_restore: " prefix and the message separately, so with -j a
# line can read 'pg_restore:pg_restore: processing data for table "app.orders"' and the next one
# ' processing data for table "audit.events"': messages stay whole, prefixes move.
_PROGRAM_PREFIXES = re.compile(r"^\s*(pg_restore:\s*)*")
_PARALLEL_EVENT = re.compile(r"^(launching|finished) item (\d+) (.*)$")
_CREATING = re.compile(r'^creating (.+?) "(.*)"$')
_LOADING = re.compile(r'^processing data for table "(.*)"$')
_EXECUTING_OR_DROPPING = re.compile(r"^(executing|dropping) (.+)$")


class ItemTimer:
    """Times pg_restore's items from its -v lines (each stamped with time.monotonic() as it arrived).

    With -j, the leader prints `launching item N KIND TAG` and `finished item N KIND TAG` around each item a
    worker runs: the duration is finished - launched, and N names the item in the dump's list. Without -j (and
    in a parallel run's serial phases, before `entering main parallel loop` and after `finished main parallel
    loop`) an item is announced as it starts (`creating INDEX "app.orders_customer_idx"`, `processing data
    for table "app.orders"`, `executing SEQUENCE SET orders_id_seq`, `dropping INDEX orders_customer_idx`) and
    runs until the next line.
    """

    def __init__(self, toc: Iterable[TocItem], *, parallel: bool) -> None:
        self._toc = {item.dump_id: item for item in toc}
        self._parallel = parallel
        self._in_parallel_loop = False
        self._launched: dict[int, float] = {}
        self._running: tuple[str, str, float] | None = None  # serial: (kind, name, since)
        self.items: list[RestoreItem] = []

    def feed(self, line: str, at: float) -> None:
        message = _PROGRAM_PREFIXES.sub("", line).strip()
        if self._parallel and message == "entering main parallel loop":
            self._close(at)
            self._in_parallel_loop = True
        elif self._in_parallel_loop:
            if message == "finished main parallel loop":
                self._in_parallel_loop = False
            else:
                self._parallel_event(message, at)
        else:
            self._close(at)
            started = self._serial_start(message)
            if started:
                self._running = (*started, at)

    def finish(self, at: float) -> list[RestoreItem]:
        self._close(at)
        return self.items

    def _close(self, at: float) -> None:
        if self._running:
            kind, name, since = self._running
            self.items.append(RestoreItem(kind, name, max(0.0, at - since)))
            self._running = None

    def _parallel_event(self, message: str, at: float) -> None:
        found = _PARALLEL_EVENT.match(message)
        if not found:  # the workers' own "creating ..." lines, interleaved
            return
        event, dump_id = found.group(1), int(found.group(2))
        if event == "launching":
            self._launched[dump_id] = at
            return
        since = self._launched.pop(dump_id, None)
        if since is not None:
            kind, name = self._named(dump_id, found.group(3))
            self.items.append(RestoreItem(kind, name, max(0.0, at - since)))

    def _named(self, dump_id: int, described: str) -> tuple[str, str]:
        item = self._toc.get(dump_id)
        return (item.kind, item.qualified) if item else split_kind(described)

    def _serial_start(self, message: str) -> tuple[str, str] | None:
        if found := _LOADING.match(message):
            return "TABLE DATA", found.group(1)
        if found := _CREATING.match(message):
            return found.group(1), found.group(2)
        if found := _EXECUTING_OR_DROPPING.match(message):
            kind, tag = split_kind(found.group(2))
            name = self._qualify(kind, tag)
            return (kind, name) if found.group(1) == "executing" else (f"DROP {kind}", name)
        return None

    def _qualify(self, kind: str, tag: str) -> str:
        """`executing`/`dropping` lines give the bare tag: add the schema when the dump's list is unambiguous."""
        matches = [item for item in self._toc.values() if item.kind == kind and item.name == tag]
        return matches[0].qualified if len(matches) == 1 else tag


# --- the steps --------------------------------------------------------------------------------------------------

def _connect(conninfo: str, *, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(conninfo, autocommit=autocommit, connect_timeout=15)


def _user_objects(conn: psycopg.Connection) -> list[str]:
    """What pg_restore would collide with: relations and schemas of the user (public, empty, does not count)."""
    rows = conn.execute(
        "SELECT CASE c.relkind WHEN 'S' THEN 'sequence ' WHEN 'v' THEN 'view ' WHEN 'm' THEN 'view ' ELSE 'table ' END"
        " || n.nspname || '.' || c.relname FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')"
        "   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'"
        " UNION ALL SELECT 'schema ' || nspname FROM pg_namespace"
        " WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'public') AND nspname !~ '^pg_(toast|temp_)'"
        ).fetchall()
    return sorted((str(row[0]) for row in rows), key=lambda found: (not found.startswith("table "), found))


def ensure_target_database(dsn: str, *, replace: bool, restore_id: str | None = None) -> str:
    """Make the target database exist, empty, and marked as this restore's target (its comment names
    `restore_id`): create it when missing (from template0, as a restore needs); refuse one that holds tables
    unless `replace` (then drop it, ending its sessions, and create it) or it is already marked with the same
    `restore_id` (a re-executed step of the same restore: pre-data may have committed). Returns what was done."""
    database = dsn_params(dsn).get("dbname", "")
    if not database:
        raise RestoreError("the restore target's URL names no database")
    if database in NEVER_TARGETS:
        raise RestoreError(f"refusing to restore into {database!r}: name a database of its own")
    try:
        with _connect(with_database(dsn, MAINTENANCE_DATABASE)) as admin:
            exists, comment = _database_comment(admin, database)
            if not exists:
                _create_database(admin, database, restore_id)
                return f"created database {database}"
            with _connect(normalized_dsn(dsn)) as target:
                held = _user_objects(target)
            if not held:
                _mark(admin, database, restore_id)
                return f"database {database} exists and is empty"
            if restore_id is not None and comment == _mark_text(restore_id) and not replace:
                return f"database {database} is already this restore's target ({len(held)} objects)"
            if not replace:
                raise TargetNotEmpty(
                    f"database {database} is not empty ({len(held)} objects: {', '.join(held[:5])}"
                    f"{', ...' if len(held) > 5 else ''}): drop it, or restore with config `replace: true`, which "
                    "drops and re-creates it")
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
            _create_database(admin, database, restore_id)
            return f"dropped database {database} ({len(held)} objects) and created it empty"
    except psycopg.Error as exc:
        raise RestoreError(f"preparing database {database}: {redact(str(exc), dsn)}") from None


def _database_comment(admin: psycopg.Connection, database: str) -> tuple[bool, str]:
    """(the database exists, its comment: the restore mark, if any)."""
    found = admin.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                          (database,)).fetchone()
    return found is not None, str(found[0] or "") if found else ""


def drop_database(dsn: str) -> str:
    """Drop a restore's target (a drill's scratch database), ending its sessions. Only a database that
    ensure_target_database marked: never a live one. Missing: nothing to do."""
    database = dsn_params(dsn).get("dbname", "")
    if not database or database in NEVER_TARGETS:
        raise RestoreError(f"refusing to drop {database or 'a database the URL does not name'!r}")
    try:
        with _connect(with_database(dsn, MAINTENANCE_DATABASE)) as admin:
            exists, comment = _database_comment(admin, database)
            if not exists:
                return f"database {database} was not there"
            if not comment.startswith(RESTORE_MARK):
                raise RestoreError(f"refusing to drop database {database}: ensure_target_database did not make it")
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
            return f"dropped database {database}"
    except psycopg.Error as exc:
        raise RestoreError(f"dropping database {database}: {redact(str(exc), dsn)}") from None


def _mark_text(restore_id: str | None) -> str:
    return RESTORE_MARK + (restore_id or "-")


def _mark(admin: psycopg.Connection, database: str, restore_id: str | None) -> None:
    """The steps that empty tables (data) or trust what is there (pre-data) act only on a database marked so:
    never on a live one named by mistake."""
    admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(database),
                                                                 sql.Literal(_mark_text(restore_id))))


def _create_database(admin: psycopg.Connection, database: str, restore_id: str | None) -> None:
    # template0: template1 may hold objects (an extension added there) that the dump would collide with.
    # Made meanwhile by someone else: empty or not, the next step says.
    with contextlib.suppress(psycopg.errors.DuplicateDatabase):
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(database)))
    _mark(admin, database, restore_id)


def _is_marked(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database"
                       " WHERE datname = current_database()").fetchone()
    return bool(row and row[0] and str(row[0]).startswith(RESTORE_MARK))


def _end_leftover_sessions(conn: psycopg.Connection) -> int:
    """End the target's sessions of an earlier pg_restore (ours: RESTORE_APPLICATION), waiting until they are
    gone. A killed pg_restore's workers finish their current item; an orphaned pg_restore goes on."""
    # PostgreSQL 14 and later can wait until the session is gone; before, it is only signalled.
    waits = conn.info.server_version >= 140000
    row = conn.execute(
        sql.SQL("SELECT count(*) FILTER (WHERE {}) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = {} AND pid <> pg_backend_pid()").format(
            sql.SQL("pg_terminate_backend(pid, {})").format(TERMINATE_WAIT_MS) if waits else
            sql.SQL("pg_terminate_backend(pid)"), RESTORE_APPLICATION)).fetchone()
    return int(row[0]) if row else 0


def _quoted(conn: psycopg.Connection, item: TocItem) -> str:
    return sql.Identifier(item.schema, item.name).as_string(conn) if item.schema else \
        sql.Identifier(item.name).as_string(conn)


def _pre_data_done(conn: psycopg.Connection, toc: list[TocItem]) -> bool:
    """Pre-data runs in one transaction: when every table of the dump is there, it committed."""
    tables = [_quoted(conn, item) for item in toc if item.kind == "TABLE"]
    if not tables:
        return False
    row = conn.execute("SELECT bool_and(to_regclass(name) IS NOT NULL) FROM unnest(%s::text[]) AS name",
                       (tables,)).fetchone()
    return bool(row and row[0])


def _empty_tables_with_data(conn: psycopg.Connection, toc: list[TocItem]) -> str:
    """TRUNCATE every table the dump has data for, in one statement: a data step re-run after a killed one
    loads into empty tables, never twice."""
    tables = [_quoted(conn, item) for item in toc if item.kind == "TABLE DATA"]
    if not tables:
        return "the dump has no table data"
    missing = [str(row[0]) for row in conn.execute(
        "SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NULL", (tables,))]
    if missing:
        raise RestoreError(f"the data step needs the pre-data step first: {len(missing)} tables are missing "
                           f"({', '.join(missing[:5])})")
    foreign_keys = conn.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f'"
                                " AND conrelid = ANY(%s::text[]::regclass[])", (tables,)).fetchone()
    if foreign_keys and foreign_keys[0]:
        raise RestoreError(f"the target already has {foreign_keys[0]} foreign keys: post-data has run, so the data "
                           "step cannot load again; restore from the start (`replace: true`)")
    conn.execute(sql.SQL("TRUNCATE ONLY {}").format(sql.SQL(", ").join(sql.SQL(name) for name in tables)))
    return f"emptied {len(tables)} tables before loading"


def _pg_restore_args(binary: str, conninfo: str, dump_path: Path | str, section: Section, jobs: int) -> list[str]:
    args = [binary, "--verbose", f"--section={section}", "--exit-on-error", "--no-password", f"--dbname={conninfo}"]
    if section == "pre-data":
        args.append("--single-transaction")  # all or nothing; pg_restore refuses it with -j
    elif jobs > 1:
        args.append(f"--jobs={jobs}")
    if section == "post-data":
        args += ["--clean", "--if-exists"]  # drops what a killed attempt made, then makes it again
    return [*args, str(dump_path)]


def restore_section(dump_path: Path | str, target_dsn: str, section: Section, *, jobs: int = 1,
                    bin_dir: str | None = None, on_line: OnLine | None = None,
                    timeout: float | None = None) -> SectionReport:
    """Restore one section of a custom-format dump into `target_dsn`, re-runnable after a crash (see the module's
    docstring). `jobs` > 1 runs pg_restore -j for data and post-data. `on_line(line, monotonic time)` sees each
    line of pg_restore -v as it arrives. PgToolError when pg_restore fails, RestoreError when the target is not
    ready for the step."""
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}: one of {', '.join(SECTIONS)}")
    started = time.monotonic()
    binary = pg_binary("pg_restore", bin_dir)
    toc = toc_items(dump_path, bin_dir=bin_dir)
    notes: list[str] = []
    try:
        with _connect(normalized_dsn(target_dsn)) as conn:
            conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
            if ended := _end_leftover_sessions(conn):
                notes.append(f"ended {ended} pg_restore sessions left on the target by an earlier run")
            if not _is_marked(conn):
                raise RestoreError(f"database {conn.info.dbname} was not prepared by ensure_target_database: "
                                   f"the {section} step refuses to touch it")
            if section == "pre-data" and _pre_data_done(conn, toc):
                notes.append("pre-data was already restored (every table is there): nothing to do")
                return SectionReport(section, time.monotonic() - started, [], 1, notes)
            if section == "data":
                notes.append(_empty_tables_with_data(conn, toc))
    except psycopg.Error as exc:
        raise RestoreError(f"preparing the {section} step: {redact(str(exc), target_dsn)}") from None
    parallel = jobs > 1 and section != "pre-data"
    env, conninfo = libpq_env(target_dsn, application_name=RESTORE_APPLICATION)
    timer = ItemTimer(toc, parallel=parallel)

    def each_line(line: str, at: float) -> None:
        timer.feed(line, at)
        if on_line:
            on_line(line, at)

    run_logged(_pg_restore_args(binary, conninfo, dump_path, section, jobs), on_line=each_line, env=env,
               what=f"pg_restore --section={section}", timeout=timeout)
    ended_at = time.monotonic()
    return SectionReport(section, ended_at - started, timer.finish(ended_at), jobs if parallel else 1, notes)


def count_rows(dsn: str, tables: Iterable[str]) -> dict[str, int]:
    """Exact count(*) of each "schema.table"; RestoreError naming the first table that is not there."""
    counts: dict[str, int] = {}
    try:
        with _connect(normalized_dsn(dsn)) as conn:
            for table in tables:
                schema, _, name = table.partition(".")
                try:
                    counts[table] = row_count(conn, *(part for part in (schema, name) if part))
                except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
                    raise RestoreError(f"table {table} is not in the restored database") from None
    except psycopg.Error as exc:
        raise RestoreError(f"counting rows: {redact(str(exc), dsn)}") from None
    return counts
