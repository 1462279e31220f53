"""The application-table change feed against real servers: the application's table in its own PostgreSQL
database, the tracking database, and a SeaweedFS hot site for the objects. Keyset paging and resume, table
and query configuration, clear configuration errors, known keys skipped, late commits caught by the
re-read window, odd and unusable keys, announcements, and a 1M-row catch-up."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from vault_pipeline.devstack.buckets import ensure_bucket
from vault_pipeline.intake.app_table_feed import (
    ApplicationDatabaseUnavailable,
    AppTableConfig,
    AppTableConfigError,
    AppTableFeed,
    AppTableSource,
    CursorKind,
    CursorState,
)
from vault_pipeline.intake.changes import Change, FeedBatch
from vault_pipeline.intake.ingest import IngestReport, ingest_batch
from vault_pipeline.replication.tracking import TrackingStore
from vault_pipeline.replication.tracking.announcements import Announcement, Announcements
from vault_pipeline.resources.application_db import ApplicationDatabaseResource, close_shared_app_table_feeds
from vault_pipeline.resources.tracking_db import shared_store
from vault_pipeline_tests.conftest import fresh_database, sql, unique

DOCUMENTS = """
    CREATE TABLE documents (
        id         BIGSERIAL   PRIMARY KEY,
        key        TEXT,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        document_id TEXT, user_id UUID, kind TEXT
    );
    CREATE INDEX documents_created ON documents (created_at, id);
"""


@dataclass
class World:
    app_dsn: str
    tracking_dsn: str
    hot: Any
    bucket: str
    store: TrackingStore
    lookups: Announcements
    feeds: list[AppTableFeed] = field(default_factory=list)

    def feed(self, *, page_size: int = 10_000, reread_seconds: float = 120.0, **config: Any) -> AppTableFeed:
        feed = AppTableFeed(AppTableSource(self.app_dsn, AppTableConfig(**config)), self.lookups,
                            hot_bucket=self.bucket, page_size=page_size, reread_seconds=reread_seconds)
        self.feeds.append(feed)
        return feed

    def app(self, query: str, params: Any = ()) -> list[tuple]:
        with psycopg.connect(self.app_dsn, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def put(self, *keys: str) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: self.hot.put_object(Bucket=self.bucket, Key=k, Body=b"%PDF-1.7"), keys))

    def ingest(self, batch: FeedBatch) -> IngestReport:
        return ingest_batch(batch, client=self.hot, bucket=self.bucket, store=self.store, destination_bucket="cold")

    def registered(self) -> set[str]:
        return {r[0] for r in sql(self.tracking_dsn, "SELECT s3_key FROM vault_secure.replication_status "
                                  "WHERE bucket_source = %s", (self.bucket,))}


@pytest.fixture
def app_dsn(pg_server: Any) -> Iterator[str]:
    yield from fresh_database(pg_server, "app")


@pytest.fixture
def world(app_dsn: str, tracking_dsn: str, hot_site: Any) -> Iterator[World]:
    hot = hot_site.client()
    bucket = unique("hot-app")
    ensure_bucket(hot, bucket, object_lock=False)
    store = shared_store(tracking_dsn)  # migrated
    lookups = Announcements(tracking_dsn, max_size=2)
    w = World(app_dsn, tracking_dsn, hot, bucket, store, lookups)
    w.app(DOCUMENTS)
    try:
        yield w
    finally:
        for feed in w.feeds:
            feed.close()
        lookups.close()


def execute(dsn: str, statement: str, params: Any = ()) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement, params)


def keys_of(batch: FeedBatch) -> list[str]:
    return [c.key for c in batch.changes]


def test_keyset_pages_resume_from_the_cursor_with_an_id_cursor(world: World) -> None:
    keys = [f"docs/{i:03d}.pdf" for i in range(25)]
    world.app("INSERT INTO documents (key) SELECT unnest(%s::text[])", (keys,))
    feed = world.feed(page_size=4)
    first = feed.read(None, budget_seconds=10, max_changes=10)
    assert (keys_of(first), first.caught_up) == (keys[:10], False)
    assert json.loads(first.cursor)["after"] == [10]
    # Another process (a new feed) resumes from the stored cursor: nothing read twice, nothing lost.
    second = world.feed(page_size=4).read(first.cursor, budget_seconds=10, max_changes=10)
    third = feed.read(second.cursor, budget_seconds=10, max_changes=10)
    assert (keys_of(second), keys_of(third), third.caught_up) == (keys[10:20], keys[20:], True)
    assert json.loads(third.cursor)["after"] == [25]
    idle = feed.read(third.cursor, budget_seconds=10, max_changes=10)
    assert (idle.changes, idle.caught_up, json.loads(idle.cursor)["after"]) == ([], True, [25])
    world.app("INSERT INTO documents (key) VALUES ('docs/new.pdf')")
    assert keys_of(feed.read(idle.cursor, budget_seconds=10, max_changes=10)) == ["docs/new.pdf"]


def test_created_at_and_id_cursor_pages_through_equal_timestamps(world: World) -> None:
    base = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    # Three rows per timestamp: page boundaries (3 and 4 rows) fall inside groups of equal created_at.
    rows = [(f"t/{i:02d}.pdf", base + dt.timedelta(seconds=i // 3)) for i in range(20)]
    world.app("INSERT INTO documents (key, created_at) SELECT * FROM unnest(%s::text[], %s::timestamptz[])",
              ([k for k, _ in rows], [t for _, t in rows]))
    world.app("INSERT INTO documents (key, created_at) VALUES ('t/early.pdf', %s)", (base - dt.timedelta(days=1),))
    feed = world.feed(page_size=3, cursor_columns=("created_at", "id"))
    seen, cursor, reads = [], None, 0
    while True:
        batch = feed.read(cursor, budget_seconds=10, max_changes=4)
        seen += batch.changes
        cursor, reads = batch.cursor, reads + 1
        if batch.caught_up:
            break
    # In (created_at, id) order: the row inserted last but created earliest first; each row exactly once.
    assert [c.key for c in seen] == ["t/early.pdf"] + [k for k, _ in rows]
    assert reads == 6
    assert [c.seen_at for c in seen] == [base - dt.timedelta(days=1)] + [t for _, t in rows]
    after = json.loads(cursor)["after"]
    assert after == [(base + dt.timedelta(seconds=6)).isoformat(), 20]  # ISO timestamp, integer id
    # The cursor comes back typed: the next read compares a timestamptz and a bigint, and finds nothing new.
    assert feed.read(cursor, budget_seconds=10, max_changes=4).changes == []


def test_a_schema_qualified_table_and_a_query_read_the_same_rows(world: World) -> None:
    world.app("""
        CREATE SCHEMA app;
        CREATE TABLE app.documents (doc_no INTEGER PRIMARY KEY, doc_key TEXT NOT NULL, doc_id UUID,
                                    owner TEXT, kind TEXT, deleted BOOLEAN NOT NULL DEFAULT false);
    """)
    ids = [uuid.uuid4() for _ in range(3)]
    world.app("INSERT INTO app.documents VALUES (1, 'docs/a.pdf', %s, %s, 'invoice', false),"
              " (2, 'docs/b.pdf', %s, NULL, 'payslip', false), (3, 'tmp/c.pdf', %s, NULL, NULL, false),"
              " (4, 'docs/gone.pdf', NULL, NULL, NULL, true)", (ids[0], str(ids[2]), ids[1], ids[2]))
    columns = dict(key_column="doc_key", cursor_columns=("doc_no",), document_id_column="doc_id",
                   user_id_column="owner", document_type_column="kind")
    table = world.feed(table="app.documents", **columns).read(None, budget_seconds=10, max_changes=100)
    assert keys_of(table) == ["docs/a.pdf", "docs/b.pdf", "tmp/c.pdf", "docs/gone.pdf"]
    first = table.changes[0]
    assert (first.document_id, first.user_id, first.document_type) == (str(ids[0]), str(ids[2]), "invoice")
    # A query (with a literal "%", which must reach the server as is) instead of the table.
    query = ("SELECT doc_no, doc_key, doc_id, owner, kind FROM app.documents "
             "WHERE NOT deleted AND doc_key LIKE 'docs/%';")
    queried = world.feed(query=query, **columns).read(None, budget_seconds=10, max_changes=100)
    assert keys_of(queried) == ["docs/a.pdf", "docs/b.pdf"]
    assert [c.document_type for c in queried.changes] == ["invoice", "payslip"]
    assert queried.changes[1].document_id == str(ids[1]) and queried.changes[1].user_id is None


@pytest.mark.parametrize(("config", "setting", "words"), [
    ({"key_column": "s3_key"}, "VAULT_APP_KEY_COLUMN", "'s3_key' is not in VAULT_APP_DOCUMENTS_TABLE"),
    ({"cursor_columns": ("created", "id")}, "VAULT_APP_CURSOR_COLUMNS", "'created' is not in"),
    ({"cursor_columns": ("key",)}, "VAULT_APP_CURSOR_COLUMNS", "must be an integer or a timestamp"),
    ({"document_id_column": "doc"}, "VAULT_APP_DOCUMENT_ID_COLUMN", "'doc' is not in"),
    ({"user_id_column": "owner"}, "VAULT_APP_USER_ID_COLUMN", "'owner' is not in"),
    ({"document_type_column": "type"}, "VAULT_APP_DOCUMENT_TYPE_COLUMN", "'type' is not in"),
    ({"key_column": "id"}, "VAULT_APP_KEY_COLUMN", "must be text"),
    ({"table": "app.missing"}, "VAULT_APP_DOCUMENTS_TABLE", "does not exist"),
    ({"table": "a.b.c"}, "VAULT_APP_DOCUMENTS_TABLE", "is not a table name"),
    ({"query": "SELECT id, key FROM documents WHERE"}, "VAULT_APP_DOCUMENTS_QUERY", "syntax error"),
    ({"query": "SELECT id FROM documents"}, "VAULT_APP_KEY_COLUMN", "is not in VAULT_APP_DOCUMENTS_QUERY"),
])
def test_a_wrong_configuration_names_its_variable(world: World, config: dict, setting: str, words: str) -> None:
    with pytest.raises(AppTableConfigError) as error:
        world.feed(**config)
    assert str(error.value).startswith(f"{setting}:") and words in str(error.value)


def test_the_session_is_read_only_and_the_password_never_shown(world: World, pg_server: Any) -> None:
    feed = world.feed()
    with feed.source.pool.connection() as conn:
        settings = conn.execute("SELECT current_setting('default_transaction_read_only'),"
                                " current_setting('statement_timeout')").fetchone()
        assert settings == ("on", "10s")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM documents")
    unreachable = "postgresql://app:hunter2-secret@127.0.0.1:1/app"
    with pytest.raises(ApplicationDatabaseUnavailable) as error:
        AppTableSource(unreachable, AppTableConfig(), connect_timeout_s=1)
    assert "hunter2" not in str(error.value) and "127.0.0.1" in str(error.value)
    # The application's database going away in the middle: the read fails (the sensor keeps the cursor).
    world.app("INSERT INTO documents (key) VALUES ('docs/x.pdf')")
    batch = feed.read(None, budget_seconds=10, max_changes=10)
    pg_server.drop_database(world.app_dsn.rsplit("/", 1)[1])
    with pytest.raises(ApplicationDatabaseUnavailable):
        feed.read(batch.cursor, budget_seconds=10, max_changes=10)


def test_registered_keys_are_not_read_from_the_hot_site_again(world: World) -> None:
    keys = [f"k/{i}.pdf" for i in range(12)]
    world.app("INSERT INTO documents (key) SELECT unnest(%s::text[])", (keys,))
    world.put(*keys)
    world.ingest(world.feed().read(None, budget_seconds=10, max_changes=6))  # the first six registered
    assert world.registered() == set(keys[:6])
    # The hot object of one registered key was found missing by a copy: the feed offers it again.
    execute(world.tracking_dsn, "UPDATE vault_secure.replication_status SET hot_missing_at = now() WHERE s3_key = %s",
        (keys[0],))
    again = world.feed().read(None, budget_seconds=10, max_changes=100)  # a feed that starts over
    assert keys_of(again) == [keys[0], *keys[6:]]
    assert again.skipped == {"already registered": 5}
    report = world.ingest(again)
    assert (report.head_requests, report.registered_new, report.registered_changed) == (7, 6, 1)
    assert world.registered() == set(keys)


@pytest.mark.parametrize("cursor_columns", [("id",), ("created_at", "id")])
def test_a_row_committed_late_is_read_again_within_the_window(world: World, cursor_columns: tuple) -> None:
    world.app("INSERT INTO documents (key) VALUES ('w/0.pdf')")
    world.put("w/0.pdf", "w/late.pdf", "w/quick.pdf")
    windowed = world.feed(reread_seconds=120, cursor_columns=cursor_columns)
    plain = world.feed(reread_seconds=0, cursor_columns=cursor_columns)
    first_w, first_p = (f.read(None, budget_seconds=10, max_changes=100) for f in (windowed, plain))
    world.ingest(first_w)
    # A slow application transaction takes its id (and created_at) first and commits last.
    with psycopg.connect(world.app_dsn) as slow:
        slow.execute("INSERT INTO documents (key) VALUES ('w/late.pdf')")
        world.app("INSERT INTO documents (key) VALUES ('w/quick.pdf')")
        second_w = windowed.read(first_w.cursor, budget_seconds=10, max_changes=100)
        second_p = plain.read(first_p.cursor, budget_seconds=10, max_changes=100)
        assert keys_of(second_w) == keys_of(second_p) == ["w/quick.pdf"]
        world.ingest(second_w)
        slow.commit()
    third_w = windowed.read(second_w.cursor, budget_seconds=10, max_changes=100)
    third_p = plain.read(second_p.cursor, budget_seconds=10, max_changes=100)
    assert keys_of(third_p) == []  # without the window the row is behind the cursor: lost to the feed
    assert keys_of(third_w) == ["w/late.pdf"]  # the re-read finds it; the quick one is registered already
    assert third_w.skipped == {"already registered": 1}
    assert world.ingest(third_w).registered_new == 1
    assert json.loads(third_w.cursor)["after"][-1] == json.loads(third_p.cursor)["after"][-1] == 3


def test_the_window_forgets_old_checkpoints_and_stops_re_reading() -> None:
    kinds = [CursorKind("int", "bigint")]
    state = CursorState(("id",), after=(100,))
    for second, head in [(0, (100,)), (5, (100,)), (10, (140,)), (20, (180,)), (31, (200,))]:
        state.add_head(float(second), head, window=30)
    assert state.reread_from(31, window=30) == (100,)  # the newest checkpoint at least 30 s old: t=0
    state.after = (200,)
    assert state.reread_from(45, window=30) == (140,)  # t=10's head: rows after it may still commit late
    state.add_head(70.0, (200,), window=30)
    assert [t for t, _ in state.heads] == [31.0, 70.0]  # older checkpoints are of no use any more
    assert state.reread_from(70, window=30) == (200,)  # nothing new for 30 s: nothing re-read
    restored = CursorState.load(state.dump(kinds), ("id",), kinds)
    assert (restored.after, restored.heads) == (state.after, state.heads)
    # A cursor of other columns, or unreadable, starts over rather than comparing the wrong values.
    assert CursorState.load(state.dump(kinds), ("created_at", "id"), kinds * 2).after is None
    assert CursorState.load("not json", ("id",), kinds).after is None


def test_odd_null_and_blank_keys(world: World) -> None:
    odd = ["Zeta.pdf", "alpha beta.pdf", "é-accent.pdf", "世界/文件.pdf", "100%+sure.pdf", "a+b=c&d.pdf",
           "deep/" + "x" * 200 + "/end.pdf", "quote'double\".pdf"]
    too_long = "long/" + "/".join(c * 250 for c in "yzwv") + "/éééééé.pdf"  # 1025 bytes in UTF-8
    assert len(too_long.encode()) == 1025
    world.app("INSERT INTO documents (key) SELECT unnest(%s::text[])",
              ([odd[0], None, "", odd[1], "   ", *odd[2:], too_long, "folder/"],))
    world.put(*odd)
    world.hot.put_object(Bucket=world.bucket, Key="folder/", Body=b"")  # a folder marker: not a document
    batch = world.feed(page_size=3).read(None, budget_seconds=10, max_changes=100)
    assert keys_of(batch) == [*odd, "folder/"]
    assert batch.skipped == {"NULL key": 1, "blank key": 2, "key over 1024 bytes": 1}
    assert json.loads(batch.cursor)["after"] == [13]  # skipped rows are passed too
    report = world.ingest(batch)
    assert (report.registered_new, report.not_documents) == (len(odd), 1)
    assert world.registered() == set(odd)


def test_announced_identifiers_and_type_are_recorded(world: World) -> None:
    doc, user, hot_doc = (str(uuid.uuid4()) for _ in range(3))
    world.app("INSERT INTO documents (key, document_id, user_id, kind) VALUES"
              " ('a/1.pdf', %s, %s, 'invoice'), ('a/2.pdf', 'not-a-uuid', NULL, ' payslip '),"
              " ('a/3.pdf', %s, %s, NULL), ('a/gone.pdf', %s, NULL, 'invoice')",
              (doc.upper(), user, str(uuid.uuid4()), user, str(uuid.uuid4())))
    world.put("a/1.pdf", "a/2.pdf", "a/3.pdf")
    # a/3.pdf was registered (by the sweep, say) and copied with the document-id of its hot metadata.
    world.ingest(FeedBatch(changes=[Change("a/3.pdf")], cursor=None))
    execute(world.tracking_dsn, "UPDATE vault_secure.replication_status SET document_id = %s WHERE s3_key = 'a/3.pdf'",
        (hot_doc,))
    feed = world.feed(document_id_column="document_id", user_id_column="user_id", document_type_column="kind")
    batch = feed.read(None, budget_seconds=10, max_changes=100)
    assert keys_of(batch) == ["a/1.pdf", "a/2.pdf", "a/gone.pdf"]
    assert batch.skipped == {"already registered": 1, "document_id not a UUID (announced as NULL)": 1}
    assert batch.changes[0].document_id == doc  # normalised
    report = world.ingest(batch)  # registers, then acknowledges: the announcements land on the rows
    assert (report.registered_new, report.gone) == (2, 1)
    rows = {r[0]: r[1:] for r in sql(world.tracking_dsn, "SELECT s3_key, document_id::text, user_id::text,"
                                     " announced_document_type, document_type FROM vault_secure.replication_status")}
    assert rows == {"a/1.pdf": (doc, user, "invoice", None), "a/2.pdf": (None, None, "payslip", None),
                    "a/3.pdf": (hot_doc, user, None, None)}  # the hot metadata's id is kept
    # Re-reading the same rows changes nothing.
    assert world.lookups.record_announcements(world.bucket, [
        Announcement(c.key, c.document_id, c.user_id, c.document_type) for c in batch.changes]) == 0


@pytest.mark.slow  # about 105 s here: loading 1M + 1M rows takes 55 s, the catch-up 50 s
def test_a_million_rows_catch_up_without_reading_registered_keys_from_the_hot_site(world: World) -> None:
    total, unknown = 1_000_000, [1, 2, 77_777, 250_000, 333_333, 500_001, 654_321, 999_998, 999_999, 1_000_000]
    key = "bulk/{:07d}.pdf".format
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    world.app("DROP INDEX documents_created")  # an id cursor: the primary key is the index it reads
    started = time.monotonic()
    with psycopg.connect(world.app_dsn) as conn, conn.cursor() as cur:
        with cur.copy("COPY documents (id, key, created_at) FROM STDIN") as copy:
            copy.write("".join(f"{i}\t{key(i)}\t2026-01-01 00:00:00+00\n" for i in range(1, total + 1)))
        cur.execute("SELECT setval('documents_id_seq', %s)", (total,))
    app_loaded = time.monotonic() - started
    # The sweep registered every other key already (rows as registration writes them).
    skip = set(unknown)
    columns = "s3_key, bucket_source, bucket_dest, ovh_etag, ovh_size, source_last_modified, partition_day, status"
    with psycopg.connect(world.tracking_dsn) as conn, conn.cursor() as cur, \
            cur.copy(f"COPY vault_secure.replication_status ({columns}) FROM STDIN") as copy:
        copy.write("".join(f"{key(i)}\t{world.bucket}\tcold\tetag{i}\t8\t{base.isoformat()}\t2026-01-01\tpending\n"
                           for i in range(1, total + 1) if i not in skip))
    tracking_loaded = time.monotonic() - started - app_loaded
    world.put(*(key(i) for i in unknown))

    feed = world.feed()
    cursor, found, ticks, heads, registered = None, [], [], 0, 0
    while True:
        tick = time.monotonic()
        batch = feed.read(cursor, budget_seconds=10, max_changes=20_000)
        report = world.ingest(batch)
        ticks.append(time.monotonic() - tick)
        found += keys_of(batch)
        heads, registered = heads + report.head_requests, registered + report.registered_new
        cursor = batch.cursor
        if batch.caught_up:
            break
        assert len(ticks) < 20
    caught_up = sum(ticks)
    print(f"\n1M-row app table: COPY app {app_loaded:.1f}s, COPY tracking {tracking_loaded:.1f}s; "
          f"{len(ticks)} tick(s) {', '.join(f'{t:.2f}s' for t in ticks)}; {total / caught_up:,.0f} rows/s")
    assert sorted(found) == [key(i) for i in unknown]  # exactly those, each once
    assert (heads, registered) == (len(unknown), len(unknown))
    assert json.loads(cursor)["after"] == [total]
    assert max(ticks) < 15  # a tick stays within its budget (plus the HEADs and the registration)
    again = feed.read(cursor, budget_seconds=10, max_changes=20_000)
    assert (again.changes, again.caught_up) == ([], True)


def test_the_resource_checks_its_configuration_and_keeps_one_feed_per_process(world: World) -> None:
    world.app("INSERT INTO documents (key, created_at) VALUES ('r/1.pdf', now())")
    resource = ApplicationDatabaseResource(dsn=world.app_dsn, tracking_dsn=world.tracking_dsn,
                                           cursor_columns=" created_at , id ")
    try:
        feed = resource.feed(hot_bucket=world.bucket)
        assert feed is resource.feed(hot_bucket=world.bucket)  # Dagster builds resources on every tick
        assert keys_of(feed.read(None, budget_seconds=5, max_changes=10)) == ["r/1.pdf"]
        wrong = ApplicationDatabaseResource(dsn=world.app_dsn, tracking_dsn=world.tracking_dsn,
                                            document_type_column="doc_type")
        with pytest.raises(AppTableConfigError, match=r"^VAULT_APP_DOCUMENT_TYPE_COLUMN: column 'doc_type'"):
            wrong.feed(hot_bucket=world.bucket)
    finally:
        close_shared_app_table_feeds()
