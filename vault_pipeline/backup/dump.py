"""pg_dump of one database into a spool file, hashed as it is written, with a manifest of its rows.

The dump and the row counts are taken in one snapshot: a REPEATABLE READ transaction exports its snapshot
(pg_export_snapshot) and counts every table and reads the journal position in it, then pg_dump reads through
the same snapshot (--snapshot) while that transaction stays open. The counts are then exactly what the dump
holds, which is what a restore is verified against, even while replication keeps writing.

Why a spool file and not a stream straight to the cold site: the SHA-256 goes into the object's metadata,
which is set when the upload is created, before the first byte is sent (the same reason as the SFTP intake's
large files, docs/sftp-intake.md). Memory stays at one chunk whatever the dump's size.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql

from vault_pipeline.backup.pg_tools import (
    PgToolError,
    libpq_env,
    pg_binary,
    require_not_older_than_server,
    run_logged,
    tool_version,
)

CHUNK = 1024 * 1024
# Tables are counted in these schemas' complement (PostgreSQL's own).
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


@dataclass
class DatabaseDump:
    """One database's dump, as written to the spool and described in the backup's manifest."""

    database: str  # "tracking" or "dagster": what the database is, not its server-side name
    path: Path
    size: int = 0
    sha256: str = ""
    seconds: float = 0.0
    row_counts: dict[str, int] = field(default_factory=dict)  # "schema.table" -> rows in the snapshot
    journal: list[dict[str, Any]] = field(default_factory=list)  # vault_secure.journal_state rows in the snapshot
    server_version: str = ""
    pg_dump_version: str = ""

    @property
    def rows(self) -> int:
        return sum(self.row_counts.values())

    def manifest_entry(self) -> dict[str, Any]:
        entry = asdict(self)
        entry.pop("path")
        return entry


def _tables(conn: psycopg.Connection) -> list[tuple[str, str]]:
    return [(schema, name) for schema, name in conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'r' AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg_temp%%'"
        " ORDER BY 1, 2", (list(SYSTEM_SCHEMAS),)).fetchall()]


def row_count(conn: psycopg.Connection, *qualified_name: str) -> int:
    """Exact count(*) of one table, named by its parts ("schema", "table"), as the connection sees it."""
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*qualified_name))).fetchone()
    return int(row[0]) if row else 0


def count_tables(conn: psycopg.Connection) -> dict[str, int]:
    """Exact row counts of every user table, as the connection's transaction sees them."""
    return {f"{schema}.{name}": row_count(conn, schema, name) for schema, name in _tables(conn)}


def journal_position(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """The journal head per site in this snapshot: entries below next_seq are in the dump."""
    exists = conn.execute("SELECT to_regclass('vault_secure.journal_state') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return []
    return [{"site": site, "next_seq": int(next_seq), "last_hash": last_hash} for site, next_seq, last_hash in
            conn.execute("SELECT site, next_seq, last_hash FROM vault_secure.journal_state ORDER BY site")]


def _hash_into(stream: IO[bytes], path: Path, result: dict[str, Any]) -> None:
    digest, size = hashlib.sha256(), 0
    try:
        with path.open("wb") as out:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
        result.update(sha256=digest.hexdigest(), size=size)
    except BaseException as exc:  # reported by the caller: a full spool disk must name itself
        result["error"] = exc
        stream.close()  # pg_dump then ends (a broken pipe) instead of waiting on a pipe nobody reads


def dump_database(database: str, dsn: str, spool_dir: Path, *, bin_dir: str | None = None,
                  timeout_seconds: float = 6 * 3600) -> DatabaseDump:
    """pg_dump -Fc of `dsn` into `spool_dir/<database>.dump`, with row counts and journal head of the same
    snapshot. PgToolError (naming pg_dump, never the DSN's password) when the dump fails, or when this pg_dump
    is older than the server."""
    started = time.monotonic()
    binary = pg_binary("pg_dump", bin_dir)
    require_not_older_than_server(binary, dsn)
    env, dbname = libpq_env(dsn)
    result = DatabaseDump(database=database, path=spool_dir / f"{database}.dump", pg_dump_version=tool_version(binary))
    spool_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {}
    with psycopg.connect(dsn, autocommit=True, connect_timeout=15) as conn:
        result.server_version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
            # Counted in the exported snapshot, which pg_dump then reads: the counts are exactly the dump's.
            result.row_counts = count_tables(conn)
            result.journal = journal_position(conn)
            try:
                run_logged([binary, "--format=custom", f"--snapshot={snapshot}", "--no-password", f"--dbname={dbname}"],
                           env=env, what=f"pg_dump of the {database} database", timeout=timeout_seconds,
                           read_stdout=lambda stream: _hash_into(stream, result.path, written))
            except PgToolError:
                if "error" not in written:
                    result.path.unlink(missing_ok=True)
                    raise
    if "error" in written:  # the spool failed first (pg_dump, left writing to a closed pipe, failed after it)
        result.path.unlink(missing_ok=True)
        raise PgToolError(f"writing the {database} dump to {result.path} failed: {written['error']}")
    result.size, result.sha256 = int(written["size"]), str(written["sha256"])
    result.seconds = time.monotonic() - started
    return result


__all__ = ["DatabaseDump", "PgToolError", "count_tables", "dump_database", "journal_position"]
