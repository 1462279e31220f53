"""The application-table change feed: new documents from the application's own `documents` table (or a
query over its database), as the specification's worker finds them.

Reading. Rows come in the order of the cursor columns ("id", or "created_at,id": unique together, growing
with insertion), a page at a time with keyset pagination, `WHERE (c1, c2) > (last values) ORDER BY c1, c2
LIMIT n`, so each page is one index range scan however large the table. The operator's query is wrapped as
a subquery, which PostgreSQL flattens, so the condition still reaches the table's index.

Known keys. A catch-up over a large table (the feed's first read, or after the sweep registered the
bucket) would otherwise HeadObject every key: each page's keys are looked up in the tracking database
first (one statement per page) and those already registered, with a hot object not known missing, are
dropped. So is a row the application adds for an overwritten key: the table cannot tell an overwrite
from a re-read without a HeadObject per row, and the reconciliation sweep finds the new ETag.

Rows committed late. A serial id or a created_at taken at transaction start is allocated when the
application's transaction starts but becomes visible when it commits: a row can appear behind the cursor
after the feed has passed it. The cursor keeps "head checkpoints": every so often, the newest cursor value
in the table and when it was read. A read starts from the older of the cursor and the head of the newest
checkpoint at least `reread_seconds` old, so a row whose transaction took less than that (minus a tick) is
read again once committed; re-read rows that are registered are dropped by the known-keys lookup. While
catching up the cursor is far behind those heads and nothing is re-read. What this misses (a transaction
longer than the window, a row in flight at the feed's very first read, an overwrite that adds no row) the
reconciliation sweep registers.

Announcements. document_id, user_id and document type, when configured, travel on each Change and are
stored for every row read (registered or not by this batch) once the batch is registered (`acknowledge`).

Plain Python: no Dagster here (the resource is vault_pipeline/resources/application_db.py).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from vault_pipeline.intake.changes import Change, FeedBatch, FeedUnavailable
from vault_pipeline.replication.tracking.announcements import Announcement
from vault_pipeline.replication.tracking.connection import redact_dsn

log = logging.getLogger(__name__)

CURSOR_VERSION = 1
# Cursor column types whose order Python reproduces exactly (the cursor is compared in Python too).
_INTEGER_OIDS = {20, 21, 23}  # int8, int2, int4
_TIMESTAMPTZ_OID, _TIMESTAMP_OID, _DATE_OID = 1184, 1114, 1082
_TEXT_OIDS = {25, 1043, 1042, 19}  # text, varchar, bpchar, name
_UUID_OID = 2950
S3_MAX_KEY_BYTES = 1024


class AppTableConfigError(ValueError):
    """The configuration names a table, query or column the application's database does not have."""


class ApplicationDatabaseUnavailable(FeedUnavailable):
    """The application's database cannot be reached or answered with an error; the feed's cursor stays
    where it was. The message never contains a password."""


@dataclass(frozen=True)
class AppTableConfig:
    """What to read; each field is named after its setting in messages (VAULT_APP_...)."""

    table: str = "documents"  # may be schema-qualified: "app.documents"
    query: str = ""  # a SELECT used instead of the table
    key_column: str = "key"
    cursor_columns: tuple[str, ...] = ("id",)
    document_id_column: str = ""
    user_id_column: str = ""
    document_type_column: str = ""

    @property
    def source_setting(self) -> str:
        return "VAULT_APP_DOCUMENTS_QUERY" if self.query.strip() else "VAULT_APP_DOCUMENTS_TABLE"

    @property
    def source_text(self) -> str:
        return self.query.strip() if self.query.strip() else self.table


def parse_cursor_columns(value: str) -> tuple[str, ...]:
    columns = tuple(c.strip() for c in value.split(",") if c.strip())
    if not columns:
        raise AppTableConfigError("VAULT_APP_CURSOR_COLUMNS: empty; name the cursor column(s), e.g. 'id' or "
                                  "'created_at,id'")
    if len(set(columns)) != len(columns):
        raise AppTableConfigError(f"VAULT_APP_CURSOR_COLUMNS: {value!r} names a column twice")
    return columns


class TrackingLookups(Protocol):
    """What the feed asks of the tracking database (vault_pipeline/replication/tracking/announcements.py)."""

    def registered_keys(self, bucket: str, keys: Sequence[str]) -> set[str]: ...

    def record_announcements(self, bucket: str, rows: Sequence[Announcement]) -> int: ...


# --- the cursor ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CursorKind:
    """How one cursor column's values travel through the JSON cursor, and its type for the SQL cast."""

    name: str  # "int", "timestamptz", "timestamp", "date"
    pg_type: str  # format_type() of the column: the cast of the keyset parameter (same type: index scan)

    def dump(self, value: Any) -> Any:
        return value if self.name == "int" else value.isoformat()

    def load(self, value: Any) -> Any:
        if self.name == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"not an integer: {value!r}")
            return value
        if self.name == "date":
            return dt.date.fromisoformat(value)
        parsed = dt.datetime.fromisoformat(value)
        if (parsed.tzinfo is None) != (self.name == "timestamp"):
            raise ValueError(f"timestamp {value!r} does not match a {self.pg_type} column")
        return parsed


@dataclass
class CursorState:
    """The feed's cursor: the last cursor values passed (`after`), and head checkpoints [(unix time, newest
    cursor values then)], oldest first, that bound the re-read window."""

    columns: tuple[str, ...]
    after: tuple[Any, ...] | None = None
    heads: list[tuple[float, tuple[Any, ...] | None]] = field(default_factory=list)

    def dump(self, kinds: Sequence[CursorKind]) -> str:
        def values(row: tuple[Any, ...] | None) -> list[Any] | None:
            return None if row is None else [k.dump(v) for k, v in zip(kinds, row, strict=True)]
        return json.dumps({"v": CURSOR_VERSION, "columns": list(self.columns), "after": values(self.after),
                           "heads": [[round(t, 3), values(h)] for t, h in self.heads]}, separators=(",", ":"))

    @classmethod
    def load(cls, raw: str | None, columns: tuple[str, ...], kinds: Sequence[CursorKind]) -> CursorState:
        """The state a cursor string holds; a missing, unreadable or other-columns cursor reads from the
        start (a re-read costs time, never a document: registration ignores what it has)."""
        if not raw:
            return cls(columns)
        try:
            data = json.loads(raw)
            if data.get("v") != CURSOR_VERSION or tuple(data.get("columns", ())) != columns:
                raise ValueError(f"cursor of version {data.get('v')} over columns {data.get('columns')}")

            def values(row: list[Any] | None) -> tuple[Any, ...] | None:
                if row is None:
                    return None
                if len(row) != len(kinds):
                    raise ValueError(f"{len(row)} values for {len(kinds)} columns")
                return tuple(k.load(v) for k, v in zip(kinds, row, strict=True))
            return cls(columns, values(data.get("after")),
                       [(float(t), values(h)) for t, h in data.get("heads", [])])
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("app-table feed: cursor not usable (%s); reading the table from its start", exc)
            return cls(columns)

    def reread_from(self, now: float, window: float) -> tuple[Any, ...] | None:
        """Where this read starts: the cursor, or before it the head of the newest checkpoint at least
        `window` seconds old (the oldest checkpoint if none is that old yet). None: from the start."""
        if window <= 0 or not self.heads or self.after is None:
            return self.after
        old = [head for when, head in self.heads if when <= now - window]
        head = old[-1] if old else self.heads[0][1]
        if head is None:
            return None  # the table was empty then: everything is newer
        return min(head, self.after)

    def add_head(self, when: float, head: tuple[Any, ...] | None, window: float) -> None:
        """Record a checkpoint (at most ~10 per window), and forget those older than the newest one at
        least `window` old: reread_from never looks further back."""
        if window <= 0:
            self.heads = []
            return
        if not self.heads or when - self.heads[-1][0] >= window / 10:
            self.heads.append((when, head))
        old = [i for i, (t, _) in enumerate(self.heads) if t <= when - window]
        if old:
            self.heads = self.heads[old[-1]:]


# --- the application's database ----------------------------------------------------------------------

@dataclass(frozen=True)
class AppRow:
    key: Any
    position: tuple[Any, ...]
    document_id: Any = None
    user_id: Any = None
    document_type: Any = None


class AppTableSource:
    """The application's database, read-only: validated configuration, keyset pages and the head."""

    def __init__(self, dsn: str, config: AppTableConfig, *, statement_timeout_s: float = 10.0,
                 connect_timeout_s: float = 10.0, max_connections: int = 2) -> None:
        self.config = config
        self.where = redact_dsn(dsn)
        # Read-only and short statements, set per session: the feed can never write the application's
        # data, nor hold a long query on its server. (SET, not startup options: poolers refuse those.)
        timeout_ms = int(statement_timeout_s * 1000)

        def configure(conn: psycopg.Connection) -> None:
            conn.execute("SET default_transaction_read_only = on")
            conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(timeout_ms)))
            conn.execute("SET application_name = 'vault-pipeline app-table feed'")

        self.pool = ConnectionPool(dsn, min_size=1, max_size=max_connections, open=True, configure=configure,
                                   kwargs={"autocommit": True, "connect_timeout": int(connect_timeout_s)},
                                   name="vault-app-table")
        try:
            self.pool.wait(timeout=connect_timeout_s)
            self._validate()
        except PoolTimeout:
            self.pool.close()
            raise ApplicationDatabaseUnavailable(
                f"application database {self.where} unreachable after {connect_timeout_s:.0f}s (check "
                "VAULT_APP_DATABASE_URL and that the server runs)") from None
        except BaseException:
            self.pool.close()
            raise

    def close(self) -> None:
        self.pool.close()

    def _source(self) -> sql.Composable:
        if self.config.query.strip():
            # The operator's own SELECT, verbatim; "%" doubled because the statement has parameters.
            text = self.config.query.strip().rstrip(";").strip().replace("%", "%%")
            return sql.SQL("({})").format(sql.SQL(text))  # type: ignore[arg-type]
        parts = self.config.table.strip().split(".")
        if len(parts) > 2 or not all(parts):
            raise AppTableConfigError(f"VAULT_APP_DOCUMENTS_TABLE: {self.config.table!r} is not a table name "
                                      "(\"documents\" or \"schema.documents\")")
        return sql.Identifier(*parts)

    def _validate(self) -> None:
        """Run the source with LIMIT 0 and check that every configured column is in its result."""
        cfg = self.config
        probe = sql.SQL("SELECT * FROM {} AS app LIMIT 0").format(self._source())
        try:
            with self.pool.connection() as conn:
                description = conn.execute(probe).description or []
                oids = {c.name: c.type_code for c in description}
                types = dict(conn.execute("SELECT oid::int, format_type(oid, NULL) FROM pg_type WHERE oid = ANY(%s)",
                                          (list(set(oids.values())),)).fetchall())
        except psycopg.errors.UndefinedTable as exc:
            raise AppTableConfigError(f"{cfg.source_setting}: {exc.diag.message_primary} in the application "
                                      f"database {self.where}") from None
        except psycopg.errors.QueryCanceled:
            raise AppTableConfigError(f"{cfg.source_setting}: {cfg.source_text!r} did not answer even with "
                                      "LIMIT 0 within the statement timeout") from None
        except (psycopg.errors.SyntaxError, psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedFunction,
                psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction) as exc:
            raise AppTableConfigError(f"{cfg.source_setting}: {exc.diag.message_primary} (application database "
                                      f"{self.where})") from None
        except psycopg.OperationalError as exc:
            raise ApplicationDatabaseUnavailable(f"application database {self.where}: {exc}") from None
        available = ", ".join(oids) or "none"
        wanted = [("VAULT_APP_KEY_COLUMN", cfg.key_column)]
        wanted += [("VAULT_APP_CURSOR_COLUMNS", c) for c in cfg.cursor_columns]
        wanted += [(setting, column) for setting, column in (
            ("VAULT_APP_DOCUMENT_ID_COLUMN", cfg.document_id_column), ("VAULT_APP_USER_ID_COLUMN", cfg.user_id_column),
            ("VAULT_APP_DOCUMENT_TYPE_COLUMN", cfg.document_type_column)) if column]
        for setting, column in wanted:
            if column not in oids:
                raise AppTableConfigError(f"{setting}: column {column!r} is not in {cfg.source_setting} "
                                          f"{cfg.source_text!r} (its columns: {available})")
        if oids[cfg.key_column] not in _TEXT_OIDS:
            raise AppTableConfigError(f"VAULT_APP_KEY_COLUMN: column {cfg.key_column!r} is of type "
                                      f"{types.get(oids[cfg.key_column])}; the object key must be text")
        kinds = []
        for column in cfg.cursor_columns:
            oid = oids[column]
            kind = ("int" if oid in _INTEGER_OIDS else "timestamptz" if oid == _TIMESTAMPTZ_OID
                    else "timestamp" if oid == _TIMESTAMP_OID else "date" if oid == _DATE_OID else None)
            if kind is None:
                raise AppTableConfigError(f"VAULT_APP_CURSOR_COLUMNS: column {column!r} is of type {types.get(oid)}; "
                                          "a cursor column must be an integer or a timestamp (e.g. 'id' or "
                                          "'created_at,id')")
            kinds.append(CursorKind(kind, types[oid]))
        self.kinds: tuple[CursorKind, ...] = tuple(kinds)
        # The first timestamp cursor column dates each change (detection latency is measured from it).
        self.seen_at_index = next((i for i, k in enumerate(kinds) if k.name in ("timestamptz", "timestamp")), None)
        self._compose()

    def _compose(self) -> None:
        cfg = self.config
        cursor = [sql.Identifier("app", c) for c in cfg.cursor_columns]
        optional = [c for c in (cfg.document_id_column, cfg.user_id_column, cfg.document_type_column)]
        selected = [sql.Identifier("app", cfg.key_column), *cursor,
                    *(sql.Identifier("app", c) if c else sql.NULL for c in optional)]
        keyset = sql.SQL("({}) > ({})").format(
            sql.SQL(", ").join(cursor),
            sql.SQL(", ").join(sql.SQL("CAST({} AS {})").format(sql.Placeholder(), sql.SQL(k.pg_type))  # type: ignore[arg-type]
                               for k in self.kinds))
        not_null = sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(c) for c in cursor)
        base = sql.SQL("SELECT {} FROM {} AS app").format(sql.SQL(", ").join(selected), self._source())
        order = sql.SQL(", ").join(cursor)
        self._first_page = sql.SQL("{} WHERE {} ORDER BY {} LIMIT {}").format(
            base, not_null, order, sql.Placeholder())
        self._next_page = sql.SQL("{} WHERE {} ORDER BY {} LIMIT {}").format(base, keyset, order, sql.Placeholder())
        self._head = sql.SQL("SELECT {} FROM {} AS app WHERE {} ORDER BY {} LIMIT 1").format(
            sql.SQL(", ").join(cursor), self._source(), not_null,
            sql.SQL(", ").join(sql.SQL("{} DESC").format(c) for c in cursor))

    def _run(self, statement: sql.Composable, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            with self.pool.connection() as conn:
                return conn.execute(statement, params).fetchall()
        except PoolTimeout:
            raise ApplicationDatabaseUnavailable(f"application database {self.where}: no connection") from None
        except psycopg.Error as exc:
            raise ApplicationDatabaseUnavailable(
                f"application database {self.where}, {self.config.source_setting}: {exc}") from None

    def head(self) -> tuple[Any, ...] | None:
        rows = self._run(self._head, ())
        return tuple(rows[0]) if rows else None

    def page(self, after: tuple[Any, ...] | None, limit: int) -> list[AppRow]:
        rows = self._run(self._first_page, (limit,)) if after is None else self._run(self._next_page, (*after, limit))
        n = len(self.kinds)
        return [AppRow(r[0], tuple(r[1:1 + n]), *r[1 + n:]) for r in rows]


# --- the feed -----------------------------------------------------------------------------------------

def _uuid_or_none(value: Any) -> tuple[str | None, bool]:
    """(normalized UUID or None, whether a present value was not a UUID)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, False
    try:
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value).strip())), False
    except ValueError:
        return None, True


def _utc(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return None


class AppTableFeed:
    """ChangeFeed over the application's table (see the module's docstring)."""

    name = "app-table"

    def __init__(self, source: AppTableSource, tracking: TrackingLookups, *, hot_bucket: str,
                 page_size: int = 10_000, reread_seconds: float = 120.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.source = source
        self.tracking = tracking
        self.hot_bucket = hot_bucket
        self.page_size = page_size
        self.reread_seconds = reread_seconds
        self.clock = clock

    def close(self) -> None:
        self.source.close()

    def read(self, cursor: str | None, *, budget_seconds: float, max_changes: int) -> FeedBatch:
        started = time.monotonic()
        kinds = self.source.kinds
        state = CursorState.load(cursor, self.source.config.cursor_columns, kinds)
        start = state.reread_from(self.clock(), self.reread_seconds)
        # The checkpoint's time is taken after its statement: every row allocated later is beyond its head.
        head = self.source.head()
        state.add_head(self.clock(), head, self.reread_seconds)

        changes: list[Change] = []
        announcements: list[Announcement] = []
        skipped: dict[str, int] = {}
        position, after = start, state.after
        caught_up = False
        while True:
            limit = self.page_size
            rows = self.source.page(position, limit)
            consumed, full = self._take(rows, changes, announcements, skipped, max_changes)
            if consumed:
                position = rows[consumed - 1].position
                after = position if after is None else max(after, position)
            if consumed < len(rows) or full:
                break  # max_changes reached: the rest is for the next read
            if len(rows) < limit:
                caught_up = True
                break
            if time.monotonic() - started >= budget_seconds:
                break
        state.after = after

        def acknowledge() -> None:
            # After registration commits: rows exist for the new keys, so their announcements can land.
            if announcements:
                self.tracking.record_announcements(self.hot_bucket, announcements)

        return FeedBatch(changes=changes, cursor=state.dump(kinds), caught_up=caught_up,
                         acknowledge=acknowledge if announcements else None, skipped=skipped)

    def _take(self, rows: list[AppRow], changes: list[Change], announcements: list[Announcement],
              skipped: dict[str, int], max_changes: int) -> tuple[int, bool]:
        """Append the page's changes (unregistered keys) in order; returns how many rows were consumed and
        whether max_changes was reached. A row is consumed only when its change is in the batch (or it is
        skipped, or already registered)."""
        def skip(reason: str) -> None:
            skipped[reason] = skipped.get(reason, 0) + 1

        usable: list[tuple[AppRow, str, dt.datetime | None]] = []
        for row in rows:
            seen_at = _utc(row.position[self.source.seen_at_index]) if self.source.seen_at_index is not None else None
            usable.append((row, row.key if isinstance(row.key, str) else "", seen_at))
        candidates = [(k, s) for _, k, s in usable if k.strip() and len(k.encode("utf-8")) <= S3_MAX_KEY_BYTES]
        known = self.tracking.registered_keys(self.hot_bucket, [k for k, _ in candidates])
        consumed = 0
        for row, key, seen_at in usable:
            if len(changes) >= max_changes:
                return consumed, True
            consumed += 1
            if row.key is None:
                skip("NULL key")
                continue
            if not key.strip():
                skip("blank key")
                continue
            if len(key.encode("utf-8")) > S3_MAX_KEY_BYTES:
                skip("key over 1024 bytes")
                continue
            document_id, bad_document_id = _uuid_or_none(row.document_id)
            user_id, bad_user_id = _uuid_or_none(row.user_id)
            if bad_document_id:
                skip("document_id not a UUID (announced as NULL)")
            if bad_user_id:
                skip("user_id not a UUID (announced as NULL)")
            document_type = (str(row.document_type).strip() or None) if row.document_type is not None else None
            announcement = Announcement(key, document_id, user_id, document_type)
            if announcement.says_something:
                announcements.append(announcement)
            if key in known:
                skip("already registered")
                continue
            changes.append(Change(key=key, seen_at=seen_at, document_id=document_id, user_id=user_id,
                                  document_type=document_type))
        return consumed, len(changes) >= max_changes
