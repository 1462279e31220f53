"""The SeaweedFS filer change feed against a real SeaweedFS hot site (its filer's metadata stream, read with
`weed filer.meta.tail`) and a real tracking database: odd keys, multipart uploads, overwrites, deletions,
resume from a cursor without loss, batches cut by max_changes, isolation between buckets, the read budget,
clear errors, and registration through ingest_batch."""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psutil
import pytest

from vault_pipeline.devstack.buckets import ensure_bucket
from vault_pipeline.devstack.ports import LOOPBACK
from vault_pipeline.intake.changes import ChangeFeed, FeedBatch
from vault_pipeline.intake.filer_feed import FilerFeedError, SeaweedFilerFeed
from vault_pipeline.intake.ingest import IngestReport, ingest_batch
from vault_pipeline.partitions import partition_key_for
from vault_pipeline.resources.seaweedfs_filer import SeaweedFilerResource
from vault_pipeline.resources.tracking_db import shared_store
from vault_pipeline_tests.conftest import unique

BODY = b"%PDF-1.7 filer feed"


def filer_address(site: Any) -> str:
    return f"{LOOPBACK}:{site.ports.filer}.{site.ports.filer_grpc}"


@dataclass
class Bucket:
    hot: Any
    name: str
    address: str

    def feed(self, **options: Any) -> SeaweedFilerFeed:
        return SeaweedFilerFeed(self.address, self.name, **options)

    def put(self, *keys: str, body: bytes = BODY) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: self.hot.put_object(Bucket=self.name, Key=k, Body=body), keys))


@pytest.fixture
def bucket(hot_site: Any) -> Bucket:
    hot = hot_site.client()
    name = unique("filer")
    ensure_bucket(hot, name, object_lock=False)
    return Bucket(hot, name, filer_address(hot_site))


def read_all(feed: ChangeFeed, cursor: str | None, *, max_changes: int = 10_000,
             limit: int = 50) -> tuple[list[FeedBatch], str | None]:
    """Read until caught up; the batches and the last cursor."""
    batches = []
    for _ in range(limit):
        batch = feed.read(cursor, budget_seconds=10, max_changes=max_changes)
        batches.append(batch)
        cursor = batch.cursor
        if batch.caught_up:
            return batches, cursor
    raise AssertionError(f"not caught up after {limit} reads")


def keys_of(batches: list[FeedBatch]) -> list[str]:
    return [c.key for b in batches for c in b.changes]


def caught_up_cursor(feed: ChangeFeed) -> str | None:
    return read_all(feed, None)[1]


def test_new_objects_are_delivered_with_their_keys_odd_ones_included(bucket: Bucket) -> None:
    feed = bucket.feed()
    cursor = caught_up_cursor(feed)
    long_key = "/".join(["l" * 250] * 5)[:1020] + ".pdf"  # 1024 bytes; SeaweedFS allows 255 per segment
    keys = ["plain.pdf", "with space/a b.pdf", "unicode/ünïcødé-文書.pdf", "percent/100%25 done%.pdf",
            "plus/a+b=c.pdf", "deep/a/b/c/d.pdf", long_key]
    assert len(long_key.encode()) == 1024
    before = dt.datetime.now(dt.UTC)
    bucket.put(*keys)
    after = dt.datetime.now(dt.UTC)
    batches, _ = read_all(feed, cursor)
    assert sorted(set(keys_of(batches))) == sorted(keys)
    for change in (c for b in batches for c in b.changes):
        # seen_at is the filer's event time (same machine: same clock, within a second)
        assert change.seen_at is not None
        assert before - dt.timedelta(seconds=1) <= change.seen_at <= after + dt.timedelta(seconds=1)
        assert change.etag is None  # the event holds no S3 ETag: ingest reads it with HeadObject
    # key prefixes are directories in the filer: seen, skipped, counted
    assert sum(b.skipped.get("directories", 0) for b in batches) >= 4


def test_multipart_upload_delivers_exactly_the_final_key(bucket: Bucket) -> None:
    feed = bucket.feed()
    cursor = caught_up_cursor(feed)
    key = "multi/big scan.pdf"
    upload = bucket.hot.create_multipart_upload(Bucket=bucket.name, Key=key)
    parts = []
    for number, size in ((1, 5 * 1024 * 1024), (2, 1000)):
        part = bucket.hot.upload_part(Bucket=bucket.name, Key=key, UploadId=upload["UploadId"], PartNumber=number,
                                      Body=b"p" * size)
        parts.append({"PartNumber": number, "ETag": part["ETag"]})
    bucket.hot.complete_multipart_upload(Bucket=bucket.name, Key=key, UploadId=upload["UploadId"],
                                         MultipartUpload={"Parts": parts})
    batches, _ = read_all(feed, cursor)
    assert keys_of(batches) == [key]
    assert sum(b.skipped.get("multipart parts", 0) for b in batches) >= 4  # folders and parts, made and removed


def test_overwrite_is_delivered_again_and_deletion_is_skipped(bucket: Bucket) -> None:
    feed = bucket.feed()
    bucket.put("doc.pdf", "gone.pdf")
    time.sleep(1.5)  # so that they are older than the reorder window the cursor keeps behind "marker.pdf"
    bucket.put("marker.pdf")
    batches, cursor = read_all(feed, None)
    assert sorted(set(keys_of(batches))) == ["doc.pdf", "gone.pdf", "marker.pdf"]

    bucket.put("doc.pdf", body=b"%PDF-1.7 rewritten")
    bucket.hot.delete_object(Bucket=bucket.name, Key="gone.pdf")
    batches, _ = read_all(feed, cursor)
    keys = keys_of(batches)
    assert keys.count("doc.pdf") == 1 and set(keys) - {"marker.pdf"} == {"doc.pdf"}
    assert sum(b.skipped.get("deletions", 0) for b in batches) == 1


def test_cursor_resumes_without_loss_and_rereading_registers_once(bucket: Bucket, tracking_dsn: str) -> None:
    feed = bucket.feed()
    store = shared_store(tracking_dsn)
    first_keys = [f"first/{i:03d}.pdf" for i in range(40)]
    bucket.put(*first_keys)
    first, cursor_1 = read_all(feed, None)
    assert set(keys_of(first)) == set(first_keys)
    second_keys = [f"second/{i:03d}.pdf" for i in range(40)]
    bucket.put(*second_keys)
    second, cursor_2 = read_all(feed, cursor_1)
    # at least once: everything uploaded between the reads; a first-batch key only from the reorder window
    assert set(second_keys) <= set(keys_of(second))
    assert int(cursor_2 or 0) > int(cursor_1 or 0)

    def ingest(batches: list[FeedBatch]) -> IngestReport:
        report = IngestReport()
        for batch in batches:
            report.merge(ingest_batch(batch, client=bucket.hot, bucket=bucket.name, store=store,
                                      destination_bucket="cold"))
        return report

    assert ingest(first + second).registered_new == 80
    again = ingest(read_all(feed, None)[0])  # from the start again: harmless
    assert again.changes >= 80 and again.registered_new == 0 and again.registered_changed == 0
    assert len(store.rows(bucket.name)) == 80


def test_batches_cut_by_max_changes_lose_nothing_and_progress(bucket: Bucket) -> None:
    feed = bucket.feed()
    cursor = caught_up_cursor(feed)
    keys = [f"cut/{i:03d}.pdf" for i in range(60)]
    bucket.put(*keys)
    batches, _ = read_all(feed, cursor, max_changes=7)
    assert all(len(b.changes) <= 7 for b in batches)
    assert not all(b.caught_up for b in batches)
    assert set(keys_of(batches)) == set(keys)
    cursors = [int(b.cursor or 0) for b in batches]
    assert cursors == sorted(cursors)


def test_another_buckets_objects_are_not_delivered(bucket: Bucket) -> None:
    # "<name>0" shares the filer path prefix "/buckets/<name>" as a string
    other = Bucket(bucket.hot, bucket.name + "0", bucket.address)
    ensure_bucket(bucket.hot, other.name, object_lock=False)
    cursor = caught_up_cursor(bucket.feed())
    other.put("theirs.pdf", "a/theirs.pdf")
    bucket.put("ours.pdf")
    assert keys_of(read_all(bucket.feed(), cursor)[0]) == ["ours.pdf"]
    assert sorted(keys_of(read_all(other.feed(), None)[0])) == ["a/theirs.pdf", "theirs.pdf"]


def test_idle_feed_cursor_moves_on_and_first_use_starts_recently(bucket: Bucket) -> None:
    bucket.put("old.pdf")
    time.sleep(1.5)
    # First use starts at now - lookback: an object older than that is the reconciliation sweep's.
    recent = bucket.feed(first_read_lookback_ns=1_000_000_000)
    batch = recent.read(None, budget_seconds=10, max_changes=100)
    assert batch.caught_up and batch.changes == []
    # With the default lookback (5 min) it is delivered.
    assert keys_of(read_all(bucket.feed(), None)[0]) == ["old.pdf"]
    # An idle feed's cursor trails our clock by the idle lag, not the last event.
    idle = bucket.feed(idle_lag_ns=1_000_000_000)
    started = time.time_ns()
    batch = idle.read(str(started - 30_000_000_000), budget_seconds=10, max_changes=100)
    assert [c.key for c in batch.changes] == ["old.pdf"]
    assert started - 1_000_000_000 <= int(batch.cursor or 0) <= time.time_ns()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections and never answers: a filer that hangs."""
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        yield f"{LOOPBACK}:{port}.{port}"


def test_read_respects_its_budget_and_leaves_no_process(silent_server: str) -> None:
    feed = SeaweedFilerFeed(silent_server, unique("filer"))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    started = time.monotonic()
    batch = feed.read("1000", budget_seconds=1.0, max_changes=100)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0 + 2.5  # the budget, plus at most the grace of stopping the process
    assert batch.changes == [] and not batch.caught_up and batch.cursor == "1000"
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not left


def test_unreachable_filer_gives_a_clear_error() -> None:
    with socket.socket() as probe:  # a free port: nothing listens there
        probe.bind((LOOPBACK, 0))
        port = probe.getsockname()[1]
    address = f"{LOOPBACK}:{port}.{port}"
    with pytest.raises(FilerFeedError, match=f"filer {address}.*connection refused"):
        SeaweedFilerFeed(address, "docs").read(None, budget_seconds=10, max_changes=10)


def test_missing_weed_binary_gives_a_clear_error(tmp_path: Any) -> None:
    feed = SeaweedFilerFeed(f"{LOOPBACK}:1.2", "docs", binary=str(tmp_path / "weed"))
    with pytest.raises(FilerFeedError, match=f"filer {LOOPBACK}:1.2: cannot run weed filer.meta.tail"):
        feed.read(None, budget_seconds=5, max_changes=10)


def test_ingest_registers_pending_rows_with_the_hot_sites_etag_size_and_day(bucket: Bucket,
                                                                           tracking_dsn: str) -> None:
    resource = SeaweedFilerResource(address=bucket.address)
    feed = resource.feed(hot_bucket=bucket.name)
    assert SeaweedFilerResource(address=bucket.address).feed(hot_bucket=bucket.name) is feed  # cached
    cursor = caught_up_cursor(feed)
    bucket.put("a/one.pdf", body=b"one")
    bucket.put("b/two words.pdf", body=b"two, longer")
    batches, _ = read_all(feed, cursor)
    store = shared_store(tracking_dsn)
    for batch in batches:
        ingest_batch(batch, client=bucket.hot, bucket=bucket.name, store=store, destination_bucket="cold")
    rows = {r["s3_key"]: r for r in store.rows(bucket.name)}
    assert sorted(rows) == ["a/one.pdf", "b/two words.pdf"]
    for key, row in rows.items():
        head = bucket.hot.head_object(Bucket=bucket.name, Key=key)
        assert row["status"] == "pending"
        assert row["ovh_etag"] == head["ETag"].strip('"')
        assert row["ovh_size"] == head["ContentLength"]
        assert partition_key_for(row["partition_day"]) == partition_key_for(head["LastModified"].date())
