"""S3 event notifications read from an SQS queue: the change feed of AWS- and MinIO-like hot sites.

The queue is its own cursor: a message stays in it until it is deleted, so this feed keeps no position
(its cursor is None) and deletes what it received only once the changes are registered
(`FeedBatch.acknowledge`). A tick that dies before that leaves the messages to reappear after their
visibility timeout; SQS itself delivers at least once, unordered, sometimes twice. Both are harmless:
registration is idempotent by key + ETag, and a change carries no LastModified (an event does not say
it), so ingest reads the object with HeadObject and registers what the hot site has *now*, whatever order
the events of a rewritten key arrive in.

Accepted bodies: an S3 event (`{"Records": [...]}`, AWS, MinIO, Ceph, the moto server), the same wrapped
in an SNS notification (`{"Type": "Notification", "Message": "<event JSON>"}`, when a topic fans the
bucket's events out to several queues), and S3's `s3:TestEvent`. Keys are URL-encoded the `quote_plus`
way in events and are decoded here.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions
from botocore.config import Config

from vault_pipeline.intake.changes import Change, FeedBatch, FeedUnavailable
from vault_pipeline.replication.errors import describe_s3_error
from vault_pipeline.replication.s3client import session_client

log = logging.getLogger(__name__)

# SQS limits: ten messages per ReceiveMessage / DeleteMessageBatch, long polls of at most 20 s.
SQS_BATCH = 10
MAX_WAIT_SECONDS = 20

# Skip reasons, as the sensor's tick log shows them ("skipped 1 s3 test event, 2 removal").
TEST_EVENT = "s3 test event"
REMOVAL = "removal"
OTHER_EVENT = "other event kind"
OTHER_BUCKET = "other bucket"
UNREADABLE_RECORD = "unreadable record"
MALFORMED_DELETED = "malformed message (deleted)"
MALFORMED_KEPT = "malformed message (left to the dead-letter queue)"
PUT_BACK = "message put back (batch full)"


class SqsQueueError(FeedUnavailable):
    """The queue could not be read or its messages deleted. The message names the queue URL, never a key."""


@dataclass(frozen=True)
class SqsQueueConfig:
    queue_url: str
    endpoint_url: str = ""  # empty: AWS's SQS endpoint for the region
    region: str = ""  # empty: the region in an AWS queue URL, else us-east-1
    access_key_id: str = ""  # empty (with the secret): botocore's credential chain
    secret_access_key: str = ""
    session_token: str = ""

    def __repr__(self) -> str:  # never print a secret
        return f"SqsQueueConfig(queue_url={self.queue_url!r}, endpoint_url={self.endpoint_url!r})"

    @property
    def region_name(self) -> str:
        if self.region:
            return self.region
        # https://sqs.eu-west-3.amazonaws.com/123456789012/name: the region is the host's second label.
        labels = (urllib.parse.urlsplit(self.queue_url).hostname or "").split(".")
        if len(labels) >= 4 and labels[0] == "sqs" and labels[2] == "amazonaws":
            return labels[1]
        return "us-east-1"


def make_sqs_client(config: SqsQueueConfig) -> Any:
    """A boto3 SQS client on the pipeline's shared botocore session (credentials resolved once per
    process). Its read timeout outlasts the longest poll; retries as the S3 clients (throttling, 5xx)."""
    if bool(config.access_key_id) != bool(config.secret_access_key):
        raise ValueError(f"SQS queue {config.queue_url}: an access key id without its secret access key, or the "
                         "reverse: set both, or neither to sign with the AWS credential chain")
    client_config = Config(region_name=config.region_name, connect_timeout=5, read_timeout=MAX_WAIT_SECONDS + 10,
                           retries={"mode": "standard", "max_attempts": 4}, tcp_keepalive=True)
    return session_client(
        "sqs", endpoint_url=config.endpoint_url or None, config=client_config,
        aws_access_key_id=config.access_key_id or None, aws_secret_access_key=config.secret_access_key or None,
        aws_session_token=config.session_token or None)


@dataclass
class ParsedMessage:
    changes: list[Change] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    malformed: str | None = None  # why the body is not an S3 event notification at all


def parse_body(body: str, *, bucket: str) -> ParsedMessage:
    """The changes of `bucket` one message announces, and what it holds besides."""
    parsed = ParsedMessage()
    try:
        event = json.loads(body)
        if isinstance(event, dict) and event.get("Type") == "Notification" and isinstance(event.get("Message"), str):
            event = json.loads(event["Message"])  # SNS fan-out: the S3 event is the notification's message
    except ValueError:
        parsed.malformed = "not JSON"
        return parsed
    if not isinstance(event, dict):
        parsed.malformed = "not a JSON object"
    elif event.get("Event") == "s3:TestEvent":  # sent once when the bucket's notification is configured
        parsed.skipped[TEST_EVENT] += 1
    elif not isinstance(event.get("Records"), list) or not event["Records"]:
        parsed.malformed = "no S3 event Records"
    else:
        for record in event["Records"]:
            _add_record(parsed, record, bucket)
        if not parsed.changes and set(parsed.skipped) == {UNREADABLE_RECORD}:
            parsed.malformed = "no readable S3 event record"
            parsed.skipped.clear()
    return parsed


def _add_record(parsed: ParsedMessage, record: Any, bucket: str) -> None:
    try:
        name = str(record["eventName"]).removeprefix("s3:")  # MinIO writes "s3:ObjectCreated:Put"
        s3 = record["s3"]
        record_bucket = s3["bucket"]["name"]
        obj = s3["object"]
        key = urllib.parse.unquote_plus(obj["key"])
    except (KeyError, TypeError):
        parsed.skipped[UNREADABLE_RECORD] += 1
        return
    if record_bucket != bucket:
        parsed.skipped[OTHER_BUCKET] += 1
    elif name.startswith(("ObjectRemoved:", "LifecycleExpiration:")):
        parsed.skipped[REMOVAL] += 1
    elif not name.startswith("ObjectCreated:"):  # restores, tags, ACLs, transitions: the bytes did not change
        parsed.skipped[OTHER_EVENT] += 1
    else:
        etag = obj.get("eTag") or obj.get("etag")
        size = obj.get("size")
        parsed.changes.append(Change(
            key=key, etag=str(etag).strip('"') if etag else None,
            size=size if isinstance(size, int) and not isinstance(size, bool) else None,
            seen_at=_event_time(record.get("eventTime"))))


def _event_time(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(value)).astimezone(dt.UTC)
    except ValueError:
        return None


def _failure(action: str, queue_url: str, exc: Exception) -> SqsQueueError:
    return SqsQueueError(f"SQS queue {queue_url}: {action} failed: {describe_s3_error(exc)[0]}")


class SqsChangeFeed:
    """Reads S3 ObjectCreated notifications of one bucket from one SQS queue.

    `wait_seconds` is the long poll of a read's first ReceiveMessage (short, so an empty queue ends a read
    quickly; the following ones do not wait);
    `visibility_timeout_seconds` (None: max(60, 3 x the read's budget)) hides received messages from other
    reads until they are acknowledged, and is set on every ReceiveMessage so that a tick that reads, HEADs
    and registers within it never sees its own messages again, whatever the queue's default.
    """

    name = "sqs"

    def __init__(self, client: Any, queue_url: str, hot_bucket: str, *, wait_seconds: int = 1,
                 visibility_timeout_seconds: int | None = None) -> None:
        self.client = client
        self.queue_url = queue_url
        self.hot_bucket = hot_bucket
        self.wait_seconds = max(0, min(MAX_WAIT_SECONDS, wait_seconds))
        self.visibility_timeout_seconds = visibility_timeout_seconds
        self._dead_letter_queue: bool | None = None
        self._lock = threading.Lock()  # one read at a time per feed object (it is cached per process)

    def has_dead_letter_queue(self) -> bool:
        """Whether the queue moves messages received too often to a dead-letter queue (its RedrivePolicy).
        Asked once; it also tells early, and clearly, when the queue does not exist or cannot be reached."""
        if self._dead_letter_queue is None:
            try:
                attributes = self.client.get_queue_attributes(
                    QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"]).get("Attributes", {})
            except botocore.exceptions.ClientError as exc:
                if "AccessDenied" not in describe_s3_error(exc)[0]:
                    raise _failure("GetQueueAttributes", self.queue_url, exc) from exc
                # Only ReceiveMessage and DeleteMessage granted: behave as without a dead-letter queue.
                attributes = {}
            except botocore.exceptions.BotoCoreError as exc:
                raise _failure("GetQueueAttributes", self.queue_url, exc) from exc
            self._dead_letter_queue = bool(attributes.get("RedrivePolicy"))
        return self._dead_letter_queue

    def read(self, cursor: str | None, *, budget_seconds: float, max_changes: int) -> FeedBatch:
        """Receive until the queue is empty, `max_changes` changes are in hand or the budget is spent.
        `cursor` is ignored: what is not yet deleted from the queue is what remains to read."""
        with self._lock:
            return self._read(budget_seconds=budget_seconds, max_changes=max_changes)

    def _read(self, *, budget_seconds: float, max_changes: int) -> FeedBatch:
        deadline = time.monotonic() + budget_seconds
        keep_malformed = self.has_dead_letter_queue()
        visibility = self.visibility_timeout_seconds or max(60, math.ceil(3 * budget_seconds))
        changes: list[Change] = []
        skipped: Counter[str] = Counter()
        received: list[str] = []  # receipt handles to delete once registered
        put_back: list[str] = []
        got_messages = caught_up = False
        while len(changes) < max_changes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # Long-poll only while nothing came: once messages flow, a short poll that finds the queue empty
            # ends the read at once instead of holding the batch (and the detection) for another wait.
            wait = 0 if got_messages else min(self.wait_seconds, int(remaining))
            try:
                messages = self.client.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=min(SQS_BATCH, max_changes - len(changes)),
                    WaitTimeSeconds=wait, VisibilityTimeout=visibility,
                ).get("Messages", [])
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                error = _failure("ReceiveMessage", self.queue_url, exc)
                if not received:
                    raise error from exc
                # What is already received is still worth registering; the rest waits for the next tick.
                log.warning("%s; keeping the %d message(s) received before", error, len(received))
                break
            if not messages:
                caught_up = True
                break
            got_messages = True
            for message in messages:
                parsed = parse_body(message.get("Body", ""), bucket=self.hot_bucket)
                if changes and len(changes) + len(parsed.changes) > max_changes:
                    put_back.append(message["ReceiptHandle"])  # whole messages only: it is acknowledged whole
                    continue
                changes += parsed.changes
                skipped.update(parsed.skipped)
                if parsed.malformed is None:
                    received.append(message["ReceiptHandle"])
                    continue
                self._report_malformed(message, parsed.malformed, keep=keep_malformed)
                if keep_malformed:
                    skipped[MALFORMED_KEPT] += 1
                else:
                    skipped[MALFORMED_DELETED] += 1
                    received.append(message["ReceiptHandle"])
        if put_back:
            skipped[PUT_BACK] += len(put_back)
            self._put_back(put_back)
            caught_up = False
        skipped_other = skipped[OTHER_BUCKET]
        if skipped_other:
            log.warning("SQS queue %s: %d event record(s) of another bucket than %s, deleted: the queue should "
                        "receive the events of the hot bucket only (one queue per consumer)", self.queue_url,
                        skipped_other, self.hot_bucket)
        return FeedBatch(changes=changes, cursor=None, caught_up=caught_up,
                         acknowledge=(lambda: self.delete(received)) if received else None,
                         skipped=dict(+skipped))

    def _report_malformed(self, message: dict[str, Any], why: str, *, keep: bool) -> None:
        fate = ("left to the queue's dead-letter queue (RedrivePolicy)" if keep else
                "deleted (the queue has no dead-letter queue; a sweep lists whatever it may have announced)")
        log.warning("SQS queue %s: message %s is not an S3 event notification (%s), %s; body starts %r",
                    self.queue_url, message.get("MessageId"), why, fate, message.get("Body", "")[:200])

    def _put_back(self, receipt_handles: list[str]) -> None:
        """Make messages that did not fit in the batch visible again at once (else they wait out the
        visibility timeout). A failure costs only that wait."""
        for start in range(0, len(receipt_handles), SQS_BATCH):
            entries = [{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                       for i, h in enumerate(receipt_handles[start:start + SQS_BATCH])]
            try:
                self.client.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                log.warning("%s; those messages come back after their visibility timeout",
                            _failure("ChangeMessageVisibilityBatch", self.queue_url, exc))
                return

    def delete(self, receipt_handles: list[str]) -> None:
        """Delete received messages (their changes are registered). A failed call raises: deletions that
        never succeed (a missing sqs:DeleteMessage permission) would have every tick read the same messages
        again. A failed entry is only logged: its message comes back once and is registered once."""
        failed: Counter[str] = Counter()
        for start in range(0, len(receipt_handles), SQS_BATCH):
            chunk = receipt_handles[start:start + SQS_BATCH]
            entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(chunk)]
            try:
                answer = self.client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                raise _failure("DeleteMessageBatch", self.queue_url, exc) from exc
            failed.update(f"{f.get('Code')} ({f.get('Message') or 'no message'})" for f in answer.get("Failed", []))
        if failed:
            log.warning("SQS queue %s: %d of %d message(s) not deleted: %s; they will be received again (after "
                        "their visibility timeout) and registered once", self.queue_url, sum(failed.values()),
                        len(receipt_handles), ", ".join(f"{n} {why}" for why, n in failed.most_common()))

    def close(self) -> None:
        self.client.close()
