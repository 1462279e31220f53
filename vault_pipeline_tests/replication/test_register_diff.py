"""TrackingStore.register is an exact diff: new keys and changed ETags become pending, nothing else is written."""

import datetime as dt
from collections.abc import Iterator

import psycopg
import pytest

from vault_pipeline.replication.inventory import ListedObject
from vault_pipeline.replication.tracking import TrackingStore

NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
SRC, DST = "hot", "cold"


@pytest.fixture
def store(tracking_dsn: str) -> Iterator[TrackingStore]:
    with TrackingStore(tracking_dsn) as s:
        s.migrate()
        yield s


def listed(key: str, etag: str = "e1", size: int = 10, when: dt.datetime = NOW) -> ListedObject:
    return ListedObject(key, etag, size, when)


def register(store: TrackingStore, objects: list[ListedObject]) -> tuple[int, int, dict[dt.date, int]]:
    result = store.register(objects, source_bucket=SRC, destination_bucket=DST)
    return result.new, result.changed, result.days


def versions(dsn: str) -> dict[str, tuple[str, str, str]]:
    """key -> (xmin, xmax, status): a row that was written or locked has a new xmin or xmax."""
    with psycopg.connect(dsn) as conn:
        return {k: (xmin, xmax, status) for k, xmin, xmax, status in conn.execute(
            "SELECT s3_key, xmin::text, xmax::text, status FROM vault_secure.replication_status")}


def set_status(dsn: str, key: str, status: str, **columns: object) -> None:
    assignments = ", ".join(f"{name} = %({name})s" for name in columns)
    with psycopg.connect(dsn) as conn:
        conn.execute(f"UPDATE vault_secure.replication_status SET status = %(status)s"
                     f"{', ' + assignments if assignments else ''} WHERE s3_key = %(key)s",
                     {"status": status, "key": key, **columns})


def test_unchanged_rows_are_neither_written_nor_locked(store: TrackingStore, tracking_dsn: str) -> None:
    objects = [listed(f"k{i:04d}") for i in range(1500)]
    assert register(store, objects)[:2] == (1500, 0)
    before = versions(tracking_dsn)
    assert all(xmax == "0" for _, xmax, _ in before.values())
    for _ in range(7):  # past psycopg's prepare threshold: the prepared statement behaves the same
        assert register(store, objects) == (0, 0, {})
    assert versions(tracking_dsn) == before


def test_changed_etags_become_pending_except_rows_being_copied(store: TrackingStore, tracking_dsn: str) -> None:
    register(store, [listed(k) for k in ("copying", "failed", "replicated", "same")])
    set_status(tracking_dsn, "copying", "in_progress", lease_owner="run-1")
    set_status(tracking_dsn, "failed", "failed", retry_count=3, error_message="boom")
    with psycopg.connect(tracking_dsn) as conn:
        conn.execute("ALTER TABLE vault_secure.replication_status DROP CONSTRAINT replicated_rows_are_complete")
    set_status(tracking_dsn, "replicated", "replicated", hot_deleted_at=NOW)
    same_before = versions(tracking_dsn)["same"]

    later = NOW + dt.timedelta(days=1, hours=20)  # another UTC day
    new, changed, days = register(store, [listed("copying", "e2", 11, later), listed("failed", "e2", 12, later),
                                          listed("replicated", "e2", 13, later), listed("same"),
                                          listed("fresh", "e9", 1, later)])
    assert (new, changed, days) == (1, 3, {later.date(): 4})
    rows = {r["s3_key"]: r for r in store.rows(SRC)}
    assert rows["copying"]["status"] == "in_progress" and rows["copying"]["ovh_etag"] == "e2"
    for key in ("failed", "replicated", "fresh"):
        row = rows[key]
        assert row["status"] == "pending" and row["retry_count"] == 0 and row["error_message"] is None
        assert row["hot_deleted_at"] is None and row["partition_day"] == later.date()
    assert (rows["replicated"]["ovh_etag"], rows["replicated"]["ovh_size"]) == ("e2", 13)
    assert rows["replicated"]["source_last_modified"] == later
    assert versions(tracking_dsn)["same"] == same_before


def test_any_key_size_and_time_zone_round_trips(store: TrackingStore) -> None:
    keys = ['quote"d', "back\\slash", "tab\there", "new\nline", "comma,{brace}", "NULL", "", "é/文書/📄.pdf",
            " spaced ", "a" * 1024]
    paris = dt.timezone(dt.timedelta(hours=1))
    just_before_midnight_utc = dt.datetime(2026, 11, 24, 0, 30, tzinfo=paris)  # 23:30 UTC on the 23rd
    objects = [listed(k, f"etag-{i}", 2**40 + i, just_before_midnight_utc) for i, k in enumerate(keys)]
    assert register(store, objects) == (len(keys), 0, {dt.date(2026, 11, 23): len(keys)})
    rows = {r["s3_key"]: r for r in store.rows(SRC)}
    assert set(rows) == set(keys)
    for i, key in enumerate(keys):
        assert rows[key]["ovh_size"] == 2**40 + i and rows[key]["ovh_etag"] == f"etag-{i}"
        assert rows[key]["source_last_modified"] == just_before_midnight_utc
    assert register(store, objects) == (0, 0, {})


def test_a_key_listed_twice_is_one_row_and_nothing_is_a_noop(store: TrackingStore) -> None:
    assert register(store, []) == (0, 0, {})
    assert register(store, [listed("twice", "old"), listed("twice", "new")])[:2] == (1, 0)
    assert [(r["s3_key"], r["ovh_etag"]) for r in store.rows(SRC)] == [("twice", "new")]
    assert register(store, iter([listed("twice", "new")])) == (0, 0, {})  # any iterable


def test_buckets_are_separate(store: TrackingStore) -> None:
    register(store, [listed("shared")])
    other = store.register([listed("shared", "other")], source_bucket="other-hot", destination_bucket=DST)
    assert (other.new, other.changed) == (1, 0)
    assert register(store, [listed("shared")]) == (0, 0, {})


def test_a_sparse_listing_over_many_stored_rows(store: TrackingStore, tracking_dsn: str) -> None:
    """Objects deleted from the hot site keep their rows: a few listed keys can span thousands of stored
    rows. The diff is the same (it probes key by key instead of reading the whole range)."""
    register(store, [listed(f"k{i:05d}") for i in range(3000)])
    before = versions(tracking_dsn)
    sparse = [listed("k00000", "e2"), listed("k01500"), listed("k01500-new"), listed("k02999")]
    assert register(store, sparse)[:2] == (1, 1)
    after = versions(tracking_dsn)
    assert {k for k in after if after[k] != before.get(k)} == {"k00000", "k01500-new"}
    assert register(store, sparse) == (0, 0, {})
