"""The SQS feed against the moto server as an AWS-like hot site: S3 delivers its event notifications to a
real SQS queue (one moto process serves both), the feed reads them, ingest registers in PostgreSQL, and in
one test the whole way to a verified copy on a cold SeaweedFS through hot_bucket_sensor."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import statistics
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from dagster import DagsterInstance

from vault_pipeline.devstack.buckets import ensure_bucket
from vault_pipeline.devstack.motosite import MotoSite
from vault_pipeline.devstack.ports import find_free_port_block
from vault_pipeline.intake.changes import FeedBatch
from vault_pipeline.intake.ingest import ingest, ingest_batch
from vault_pipeline.intake.sqs_feed import (
    MALFORMED_DELETED,
    MALFORMED_KEPT,
    OTHER_BUCKET,
    OTHER_EVENT,
    PUT_BACK,
    REMOVAL,
    TEST_EVENT,
    SqsChangeFeed,
    SqsQueueConfig,
    SqsQueueError,
    make_sqs_client,
    parse_body,
)
from vault_pipeline.replication.tracking import TrackingStore
from vault_pipeline.resources.sqs_queue import SqsQueueResource, close_shared_sqs_feeds
from vault_pipeline.resources.tracking_db import shared_store
from vault_pipeline_tests.conftest import TEST_ENV, Vault, today_key, unique
from vault_pipeline_tests.stackfixtures import start_on_free_ports

HOT_KEYS = ("sqs-hot-admin", "sqs-hot-secret-value")
# Spaces, unicode, % and + (which quote_plus turns into %2B, while a space becomes +), a folder.
ODD_KEYS = ["with space.pdf", "unicodé/ünï 文書.pdf", "100%.pdf", "a+b.pdf", "a+b c%2B d.pdf", "x/y/z~!$&'()*,;=@.pdf"]


@pytest.fixture(scope="module")
def hot_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoSite]:
    """A moto server of this module's own, as the AWS-like hot site (S3 and SQS on one port)."""
    log_path = tmp_path_factory.mktemp("hot-moto") / "moto.log"
    site = start_on_free_ports(lambda port: MotoSite("hot-moto", port, *HOT_KEYS, log_path=log_path), 1)
    try:
        yield site
    finally:
        site.stop()


@dataclass
class Notifying:
    """A hot bucket whose ObjectCreated and ObjectRemoved events go to its own queue."""

    site: MotoSite
    s3: Any
    sqs: Any
    bucket: str
    queue_url: str
    queue_arn: str

    def config(self) -> SqsQueueConfig:
        return SqsQueueConfig(queue_url=self.queue_url, endpoint_url=self.site.endpoint_url,
                              access_key_id=self.site.access_key, secret_access_key=self.site.secret_key)

    def feed(self, **kwargs: Any) -> SqsChangeFeed:
        """A feed with a client of its own, as a new process would have."""
        return SqsChangeFeed(make_sqs_client(self.config()), self.queue_url, self.bucket, **kwargs)

    def notify(self, bucket: str, events: tuple[str, ...] = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")) -> None:
        self.s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": self.queue_arn, "Events": list(events)}]})

    def put(self, key: str, body: bytes = b"%PDF-1.7 sqs") -> str:
        return self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)["ETag"].strip('"')

    def queued(self) -> int:
        """Messages in the queue, visible or not (moto counts exactly)."""
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return sum(int(v) for v in attributes.values())


def make_queue(sqs: Any, name: str, **attributes: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


@pytest.fixture
def hot(hot_moto: MotoSite) -> Iterator[Notifying]:
    s3 = hot_moto.client()
    bucket = unique("hot")
    ensure_bucket(s3, bucket, object_lock=False)
    sqs = make_sqs_client(SqsQueueConfig(queue_url="", endpoint_url=hot_moto.endpoint_url,
                                         access_key_id=hot_moto.access_key, secret_access_key=hot_moto.secret_key))
    world = Notifying(hot_moto, s3, sqs, bucket, *make_queue(sqs, f"events-{bucket}"))
    world.notify(bucket)
    yield world
    world.sqs.delete_queue(QueueUrl=world.queue_url)


@pytest.fixture
def store(tracking_dsn: str) -> TrackingStore:
    return shared_store(tracking_dsn)


def drain(feed: SqsChangeFeed, *, max_changes: int = 1000, budget_seconds: float = 5) -> FeedBatch:
    """Everything the queue has now, in one batch (not acknowledged)."""
    return feed.read(None, budget_seconds=budget_seconds, max_changes=max_changes)


def register(hot: Notifying, store: TrackingStore, batch: FeedBatch, *, acknowledge: bool = True) -> Any:
    kwargs = {"client": hot.s3, "bucket": hot.bucket, "store": store, "destination_bucket": "cold"}
    return ingest_batch(batch, **kwargs) if acknowledge else ingest(batch.changes, **kwargs)


def test_created_objects_arrive_with_their_keys_decoded_and_the_test_event_is_skipped(
        hot: Notifying, store: TrackingStore) -> None:
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    etags = {key: hot.put(key, body=key.encode()) for key in ODD_KEYS}
    feed = hot.feed()
    batch = drain(feed)
    assert {c.key: c.etag for c in batch.changes} == etags
    assert {c.key: c.size for c in batch.changes} == {k: len(k.encode()) for k in ODD_KEYS}
    assert all(c.last_modified is None and before <= c.seen_at <= dt.datetime.now(dt.UTC) for c in batch.changes)
    assert batch.skipped == {TEST_EVENT: 1} and batch.caught_up and batch.cursor is None

    report = register(hot, store, batch)
    assert report.registered_new == len(ODD_KEYS) and report.head_requests == len(ODD_KEYS)
    rows = {r["s3_key"]: r for r in store.rows(hot.bucket)}
    assert set(rows) == set(ODD_KEYS) and {r["status"] for r in rows.values()} == {"pending"}
    assert hot.queued() == 0  # acknowledged: deleted from the queue
    empty = drain(feed, budget_seconds=2)
    assert empty.changes == [] and empty.acknowledge is None and empty.caught_up


def test_a_multipart_upload_arrives_once_complete(hot: Notifying, store: TrackingStore) -> None:
    key = "big/multi part.pdf"
    upload = hot.s3.create_multipart_upload(Bucket=hot.bucket, Key=key)["UploadId"]
    parts = [hot.s3.upload_part(Bucket=hot.bucket, Key=key, UploadId=upload, PartNumber=n, Body=body)["ETag"]
             for n, body in ((1, b"a" * 5 * 2**20), (2, b"tail"))]
    assert drain(hot.feed(), budget_seconds=2).changes == []  # parts announce nothing
    etag = hot.s3.complete_multipart_upload(Bucket=hot.bucket, Key=key, UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(parts, 1)]})["ETag"].strip('"')
    batch = drain(hot.feed())
    # The moto server sends ObjectCreated:Put and then ObjectCreated:CompleteMultipartUpload for one
    # completion (AWS sends the latter only): the same object twice, which registration absorbs.
    assert {(c.key, c.etag, c.size) for c in batch.changes} == {(key, etag, 5 * 2**20 + 4)}
    assert etag.endswith("-2")
    report = register(hot, store, batch)
    assert report.registered_new == 1 and report.head_requests == 1  # one HeadObject per key and batch
    [row] = store.rows(hot.bucket)
    assert row["ovh_etag"].strip('"') == etag


def test_a_message_delivered_twice_is_registered_once(hot: Notifying, store: TrackingStore) -> None:
    keys = [f"twice/{i}.pdf" for i in range(3)]
    for key in keys:
        hot.put(key)
    feed = hot.feed(visibility_timeout_seconds=1)
    first = drain(feed)
    assert register(hot, store, first, acknowledge=False).registered_new == 3  # registered, not deleted
    time.sleep(1.5)  # past the visibility timeout: SQS delivers the same messages again
    second = drain(feed)
    assert sorted(c.key for c in second.changes) == sorted(c.key for c in first.changes) == keys
    report = register(hot, store, second)
    assert (report.registered_new, report.registered_changed, report.unchanged) == (0, 0, 3)
    assert len(store.rows(hot.bucket)) == 3 and hot.queued() == 0


def test_a_crash_between_read_and_acknowledge_redelivers_and_loses_nothing(
        hot: Notifying, store: TrackingStore) -> None:
    keys = {f"crash/{i}.pdf" for i in range(12)}  # more than one ReceiveMessage and one DeleteMessageBatch
    for key in keys:
        hot.put(key)
    crashed = hot.feed(visibility_timeout_seconds=2)
    assert {c.key for c in drain(crashed).changes} == keys
    crashed.close()  # the process died before registering and deleting: nothing was acknowledged

    restarted = hot.feed(visibility_timeout_seconds=2)
    assert drain(restarted, budget_seconds=1).changes == []  # still invisible: no other reader takes them
    time.sleep(2.2)
    batch = drain(restarted)
    assert {c.key for c in batch.changes} == keys
    assert register(hot, store, batch).registered_new == len(keys)
    assert {r["s3_key"] for r in store.rows(hot.bucket)} == keys and hot.queued() == 0


def test_removals_other_events_and_other_buckets_are_skipped_and_deleted(
        hot: Notifying, store: TrackingStore) -> None:
    other = unique("other")
    ensure_bucket(hot.s3, other, object_lock=False)
    hot.notify(other)  # a misconfiguration: another bucket's events in our queue
    hot.notify(hot.bucket, ("s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:ObjectTagging:*"))
    hot.put("kept.pdf")
    hot.put("removed.pdf")
    hot.s3.delete_object(Bucket=hot.bucket, Key="removed.pdf")
    hot.s3.put_object_tagging(Bucket=hot.bucket, Key="kept.pdf", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    hot.s3.put_object(Bucket=other, Key="theirs.pdf", Body=b"x")
    batch = drain(hot.feed())
    assert sorted(c.key for c in batch.changes) == ["kept.pdf", "removed.pdf"]
    # A test event per configuration; the moto server also sends ObjectTagging:Put for every PutObject.
    assert batch.skipped == {TEST_EVENT: 3, REMOVAL: 1, OTHER_EVENT: 3, OTHER_BUCKET: 1}
    report = register(hot, store, batch)
    assert (report.registered_new, report.gone) == (1, 1)  # removed.pdf is gone when ingest reads it
    assert hot.queued() == 0


def test_malformed_bodies_are_logged_and_deleted_when_the_queue_has_no_dead_letter_queue(
        hot: Notifying, store: TrackingStore, caplog: pytest.LogCaptureFixture) -> None:
    bodies = ["not json at all", "[1, 2]", json.dumps({"Records": []}), json.dumps({"hello": "world"}),
              json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]})]
    ids = [hot.sqs.send_message(QueueUrl=hot.queue_url, MessageBody=b)["MessageId"] for b in bodies]
    hot.put("good.pdf")
    with caplog.at_level(logging.WARNING, logger="vault_pipeline.intake.sqs_feed"):
        batch = drain(hot.feed())
    assert [c.key for c in batch.changes] == ["good.pdf"]
    assert batch.skipped == {TEST_EVENT: 1, MALFORMED_DELETED: len(bodies)}
    warned = "\n".join(r.getMessage() for r in caplog.records)
    assert all(i in warned for i in ids) and "not JSON" in warned and "deleted" in warned
    register(hot, store, batch)
    assert hot.queued() == 0  # nothing left to be received again forever


def test_malformed_bodies_are_left_to_the_dead_letter_queue_when_there_is_one(
        hot: Notifying, store: TrackingStore) -> None:
    dlq_url, dlq_arn = make_queue(hot.sqs, f"dead-{hot.bucket}")
    url, arn = make_queue(hot.sqs, f"redriven-{hot.bucket}", RedrivePolicy=json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}))
    hot.queue_url, hot.queue_arn = url, arn
    hot.notify(hot.bucket)
    hot.sqs.send_message(QueueUrl=url, MessageBody="<xml>not an event</xml>")
    hot.put("good.pdf")
    feed = hot.feed(visibility_timeout_seconds=1)
    for receive_count in (1, 2):
        batch = drain(feed, budget_seconds=2)
        assert batch.skipped.get(MALFORMED_KEPT) == 1, receive_count
        register(hot, store, batch)
        time.sleep(1.2)
    assert drain(feed, budget_seconds=2).skipped == {}  # the queue moved it after its second receive
    moved = hot.sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1).get("Messages", [])
    assert [m["Body"] for m in moved] == ["<xml>not an event</xml>"]
    assert [r["s3_key"] for r in store.rows(hot.bucket)] == ["good.pdf"]


def test_events_fanned_out_through_sns_are_unwrapped(hot: Notifying, store: TrackingStore) -> None:
    sns = make_sns_client(hot.site)
    topic = sns.create_topic(Name=f"topic-{hot.bucket}")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=hot.queue_arn)
    hot.s3.put_bucket_notification_configuration(Bucket=hot.bucket, NotificationConfiguration={
        "TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectCreated:*"]}]})
    drain(hot.feed(), budget_seconds=2).acknowledge()  # the test event of the queue configuration
    etag = hot.put("fan out/é+1.pdf")
    message = hot.sqs.receive_message(QueueUrl=hot.queue_url, WaitTimeSeconds=2, VisibilityTimeout=0)["Messages"][0]
    assert json.loads(message["Body"])["Type"] == "Notification"  # the SNS envelope, as delivered
    batch = drain(hot.feed())
    assert [(c.key, c.etag) for c in batch.changes] == [("fan out/é+1.pdf", etag)]
    register(hot, store, batch)
    assert hot.queued() == 0


def make_sns_client(site: MotoSite) -> Any:
    return boto3.client("sns", endpoint_url=site.endpoint_url, region_name="us-east-1",
                        aws_access_key_id=site.access_key, aws_secret_access_key=site.secret_key)


def test_a_read_stops_at_max_changes_and_puts_back_what_did_not_fit(hot: Notifying, store: TrackingStore) -> None:
    keys = {f"many/{i:02d}.pdf" for i in range(25)}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(hot.put, keys))
    feed = hot.feed()
    first = feed.read(None, budget_seconds=10, max_changes=7)
    assert len(first.changes) == 7 and not first.caught_up
    register(hot, store, first)
    second = drain(feed)  # what was received but did not fit is visible again at once
    assert {c.key for c in first.changes} | {c.key for c in second.changes} == keys
    assert len(second.changes) == 18 and second.caught_up
    register(hot, store, second)
    assert hot.queued() == 0 and len(store.rows(hot.bucket)) == 25


def test_a_message_of_several_records_that_does_not_fit_is_put_back_whole(
        hot: Notifying, store: TrackingStore) -> None:
    keys = [f"several/{i}.pdf" for i in range(4)]
    etags = {key: hot.put(key) for key in keys}
    drain(hot.feed()).acknowledge()  # the test event and the moto server's own one-record messages
    records = [{"eventName": "ObjectCreated:Put", "eventTime": "2026-01-02T03:04:05.678Z",
                "s3": {"bucket": {"name": hot.bucket}, "object": {"key": urllib.parse.quote_plus(k), "size": 14,
                                                                  "eTag": etags[k]}}} for k in keys]
    hot.sqs.send_message(QueueUrl=hot.queue_url, MessageBody=json.dumps({"Records": records[:1]}))
    hot.sqs.send_message(QueueUrl=hot.queue_url, MessageBody=json.dumps({"Records": records[1:]}))  # as AWS may
    feed = hot.feed()  # visibility timeout 60 s: only a put-back makes the second message readable again now
    first = feed.read(None, budget_seconds=5, max_changes=2)
    assert [c.key for c in first.changes] == keys[:1] and first.skipped == {PUT_BACK: 1} and not first.caught_up
    register(hot, store, first)
    second = feed.read(None, budget_seconds=5, max_changes=2)  # more than asked: a message is taken whole
    assert [c.key for c in second.changes] == keys[1:]
    register(hot, store, second)
    assert hot.queued() == 0


def test_a_read_of_an_empty_queue_keeps_to_its_budget(hot: Notifying) -> None:
    feed = hot.feed(wait_seconds=1)
    drain(feed).acknowledge()  # the test event
    for budget in (0.3, 2.5):
        started = time.monotonic()
        batch = feed.read(None, budget_seconds=budget, max_changes=100)
        assert batch.changes == [] and time.monotonic() - started < budget + 1.5
    assert feed.read(None, budget_seconds=0, max_changes=100).caught_up is False  # no time: nothing claimed


def test_a_missing_or_unreachable_queue_is_named_in_a_clear_error_without_secrets(hot: Notifying) -> None:
    missing = hot.queue_url.rsplit("/", 1)[0] + "/no-such-queue"
    with pytest.raises(SqsQueueError) as raised:
        SqsChangeFeed(hot.sqs, missing, hot.bucket).read(None, budget_seconds=2, max_changes=10)
    assert missing in str(raised.value) and "exist" in str(raised.value)

    port = find_free_port_block(1)  # nothing listens there
    config = SqsQueueConfig(queue_url=f"http://127.0.0.1:{port}/123456789012/q", endpoint_url=f"http://127.0.0.1:{port}",
                            access_key_id="AKIAEXAMPLE", secret_access_key="wJalrXUtnFEMI-very-secret")
    assert "very-secret" not in repr(config)
    with pytest.raises(SqsQueueError) as raised:
        SqsChangeFeed(make_sqs_client(config), config.queue_url, hot.bucket).read(
            None, budget_seconds=2, max_changes=10)
    text = str(raised.value)
    assert config.queue_url in text and "very-secret" not in text and "Could not connect" in text


def test_half_given_credentials_are_refused_before_any_request() -> None:
    with pytest.raises(ValueError, match="access key id without its secret"):
        make_sqs_client(SqsQueueConfig(queue_url="https://sqs.eu-west-3.amazonaws.com/1/q", access_key_id="AKIA"))
    assert SqsQueueConfig(queue_url="https://sqs.eu-west-3.amazonaws.com/1/q").region_name == "eu-west-3"
    assert SqsQueueConfig(queue_url="https://sqs.eu-west-3.amazonaws.com/1/q", region="us-west-2").region_name \
        == "us-west-2"


def test_the_resource_keeps_one_feed_per_queue_and_bucket(hot: Notifying) -> None:
    def resource() -> SqsQueueResource:
        return SqsQueueResource(queue_url=hot.queue_url, endpoint_url=hot.site.endpoint_url,
                                access_key_id=hot.site.access_key, secret_access_key=hot.site.secret_key)

    try:
        feed = resource().feed(hot_bucket=hot.bucket)
        assert resource().feed(hot_bucket=hot.bucket) is feed  # Dagster builds the resource again every tick
        assert resource().feed(hot_bucket="another-bucket") is not feed
        hot.put("via-resource.pdf")
        assert [c.key for c in drain(feed).changes] == ["via-resource.pdf"]
    finally:
        close_shared_sqs_feeds()


def test_sns_envelope_and_minio_event_names_parse() -> None:
    record = {"eventName": "s3:ObjectCreated:Put", "eventTime": "2026-01-02T03:04:05.678Z",
              "s3": {"bucket": {"name": "b"}, "object": {"key": urllib.parse.quote_plus("a b+c.pdf"), "size": 3,
                                                         "eTag": '"abc"'}}}
    wrapped = json.dumps({"Type": "Notification", "Message": json.dumps({"Records": [record]})})
    [change] = parse_body(wrapped, bucket="b").changes  # MinIO's "s3:" prefix, quotes around the ETag
    assert (change.key, change.etag, change.size) == ("a b+c.pdf", "abc", 3)
    assert change.seen_at == dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
    assert parse_body(json.dumps({"Type": "Notification", "Message": "{"}), bucket="b").malformed == "not JSON"


# ---------------------------------------------------------------- the whole way, to the cold site


@pytest.fixture
def moto_hot_vault(hot: Notifying, cold_seaweed: Any, tracking_dsn: str, monkeypatch: pytest.MonkeyPatch,
                   ) -> Iterator[Vault]:
    """conftest's Vault with the moto server as the hot site, and the SQS feed configured."""
    cold_bucket = unique("cold")
    cold = cold_seaweed.client()
    ensure_bucket(cold, cold_bucket, object_lock=True)
    env = {
        "OVH_S3_ENDPOINT": hot.site.endpoint_url, "OVH_S3_REGION": "us-east-1",
        "OVH_S3_ACCESS_KEY_ID": hot.site.access_key, "OVH_S3_SECRET_ACCESS_KEY": hot.site.secret_key,
        "OVH_S3_BUCKET_DOCUMENTS": hot.bucket,
        "AWS_S3_ENDPOINT": cold_seaweed.endpoint_url, "AWS_S3_REGION": "us-east-1",
        "AWS_S3_ACCESS_KEY_ID": cold_seaweed.access_key, "AWS_S3_SECRET_ACCESS_KEY": cold_seaweed.secret_key,
        "AWS_S3_BUCKET_DOCUMENTS_COLD": cold_bucket,
        "VAULT_DATABASE_URL": tracking_dsn,
        # The feed, as an operator configures it.
        "VAULT_CHANGE_FEEDS": "sqs", "VAULT_SQS_QUEUE_URL": hot.queue_url, "VAULT_SQS_ENDPOINT": hot.site.endpoint_url,
        "VAULT_SQS_ACCESS_KEY_ID": hot.site.access_key, "VAULT_SQS_SECRET_ACCESS_KEY": hot.site.secret_key,
        **TEST_ENV,
    }
    for name in [n for n in os.environ if n.startswith(("VAULT_", "OVH_S3_", "AWS_S3_"))]:
        monkeypatch.delenv(name)
    try:
        with DagsterInstance.ephemeral() as instance:
            yield Vault(flavour="seaweedfs", hot=hot.s3, cold=cold, hot_bucket=hot.bucket, cold_bucket=cold_bucket,
                        dsn=tracking_dsn, env=env, monkeypatch=monkeypatch, instance=instance)
    finally:
        close_shared_sqs_feeds()


def test_an_upload_to_the_hot_bucket_ends_verified_on_the_cold_site_through_the_queue(
        moto_hot_vault: Vault, hot: Notifying) -> None:
    """hot_bucket_sensor with the sqs feed (definitions.py builds the resource from the environment), no
    listing anywhere: only the queue tells that the document exists. Then the run it requests."""
    vault, key = moto_hot_vault, "e2e/a document é+%.pdf"
    vault.put(key, body=b"%PDF-1.7 through SQS")
    result = vault.run_sensor(sweep=False)
    assert [r.partition_key for r in result.run_requests] == [today_key()]
    assert hot.queued() == 0  # registered, then deleted from the queue
    assert json.loads(vault.cursor)["feeds"] == {"sqs": None}  # the queue is the cursor

    run = vault.run_partition(result.run_requests[0].partition_key, sweep=False)
    assert run.success
    row = vault.row(key)
    assert row["status"] == "replicated" and row["verified_at"] is not None
    [version] = vault.cold_versions(key)
    got = vault.cold.get_object(Bucket=vault.cold_bucket, Key=key, VersionId=version["VersionId"])
    assert got["Body"].read() == b"%PDF-1.7 through SQS"
    assert vault.run_sensor(sweep=False).run_requests == []  # nothing new in the queue, nothing pending


# ---------------------------------------------------------------- measurements (printed; run with -s)


@pytest.mark.slow
def test_measure_detection_latency_and_throughput(hot: Notifying, store: TrackingStore) -> None:
    feed = hot.feed()
    drain(feed).acknowledge()  # the test event

    # Detection latency: upload start -> the change returned by a read, with a reader polling continuously.
    detected: dict[str, float] = {}
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            batch = feed.read(None, budget_seconds=2, max_changes=1000)
            now = time.monotonic()
            for change in batch.changes:
                detected.setdefault(change.key, now)
            if batch.acknowledge:
                batch.acknowledge()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    uploaded: dict[str, float] = {}
    for i in range(50):
        key = f"latency/{i:02d}.pdf"
        uploaded[key] = time.monotonic()
        hot.put(key)
        time.sleep(0.1)
    deadline = time.monotonic() + 30
    while len(detected) < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    assert set(detected) == set(uploaded)
    latencies = sorted(detected[k] - uploaded[k] for k in uploaded)
    p50, p99 = statistics.median(latencies), latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(f"\nSQS detection latency over {len(latencies)} uploads: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
          f"max {latencies[-1] * 1000:.0f} ms")

    # Throughput of read + acknowledge, 2000 events from real uploads, queued 100 at a time: the moto server's
    # SQS scans every queued message on each call (~30 µs each), so its depth, not the feed, sets the pace
    # of a deep queue; 100 keeps what is measured closer to the feed and the protocol.
    seen: Counter[str] = Counter()
    changes: list[Any] = []
    reading, receives = 0.0, 0
    with ThreadPoolExecutor(8) as pool:
        for start in range(0, 2000, 100):
            keys = [f"throughput/{i:04d}.pdf" for i in range(start, start + 100)]
            list(pool.map(hot.put, keys))
            started = time.monotonic()
            while True:
                batch = feed.read(None, budget_seconds=10, max_changes=1000)
                receives += 1
                if batch.acknowledge:
                    batch.acknowledge()
                seen.update(c.key for c in batch.changes)
                changes += batch.changes
                if sum(seen[k] for k in keys) == len(keys):
                    break
            reading += time.monotonic() - started
    assert seen == Counter(f"throughput/{i:04d}.pdf" for i in range(2000))  # each event once: no loss
    print(f"SQS read + acknowledge: 2000 events in {reading:.2f} s = {2000 / reading:.0f} messages/s "
          f"({receives} reads, queue depth <= 100)")

    bodies = [json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "eventTime": "2026-01-02T03:04:05.678Z",
                                       "s3": {"bucket": {"name": hot.bucket}, "object": {
                                           "key": f"a+b/{i}.pdf", "size": i, "eTag": "0" * 32}}}]})
              for i in range(2000)]
    started = time.monotonic()
    assert sum(len(parse_body(b, bucket=hot.bucket).changes) for b in bodies) == 2000
    print(f"parsing 2000 event bodies (the feed's own work): {(time.monotonic() - started) * 1000:.0f} ms")

    # And what ingest adds (HeadObject per change, one bulk registration), for the same 2000 changes.
    started = time.monotonic()
    report = ingest(changes, client=hot.s3, bucket=hot.bucket, store=store, destination_bucket="cold")
    elapsed = time.monotonic() - started
    assert report.registered_new == 2000
    print(f"ingest (HEAD + register) of {len(changes)} changes: {elapsed:.2f} s = {len(changes) / elapsed:.0f}/s")
