"""From a feed's changes to registered rows: fill in what the feed did not know from the hot site
(HeadObject), then register in bulk. Registration is idempotent by key + ETag (tracking/registration.py),
which is what makes every feed at-least-once safe: a change delivered twice is registered once."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from vault_pipeline.intake.changes import Change, FeedBatch
from vault_pipeline.replication.errors import describe_s3_error, hot_object_missing, s3_answer
from vault_pipeline.replication.inventory import ListedObject, is_document, strip_etag
from vault_pipeline.replication.tracking import TrackingStore


class HotSiteUnavailable(RuntimeError):
    """HeadObject failed in a way that says the hot site, not one key, is in trouble (5xx, network,
    throttling): nothing of the batch is registered or acknowledged, and the feed's cursor stays where it
    was, so the next tick reads the same changes again."""


@dataclass
class IngestReport:
    changes: int = 0
    registered_new: int = 0
    registered_changed: int = 0
    unchanged: int = 0
    gone: int = 0  # deleted from the hot site before they could be read (a later listing decides)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (key, why): a 4xx for one key
    not_documents: int = 0  # folder markers, the pipeline's own probes
    head_requests: int = 0
    days: dict[dt.date, int] = field(default_factory=dict)
    oldest_seen_at: dt.datetime | None = None  # of the changes registered: detection latency
    duration_s: float = 0.0

    def merge(self, other: IngestReport) -> None:
        for name in ("changes", "registered_new", "registered_changed", "unchanged", "gone", "not_documents",
                     "head_requests"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.refused += other.refused
        for day, n in other.days.items():
            self.days[day] = self.days.get(day, 0) + n
        if other.oldest_seen_at and (self.oldest_seen_at is None or other.oldest_seen_at < self.oldest_seen_at):
            self.oldest_seen_at = other.oldest_seen_at
        self.duration_s += other.duration_s


def _head(client: Any, bucket: str, change: Change) -> ListedObject | str | None:
    """The object as the hot site has it now; None when it is gone; a reason string for a 4xx on this key."""
    try:
        head = client.head_object(Bucket=bucket, Key=change.key)
    except ClientError as exc:
        if hot_object_missing(exc):
            return None
        code, status = s3_answer(exc)
        text = describe_s3_error(exc)[0]
        if status is not None and 400 <= status < 500 and code not in ("SlowDown", "RequestTimeout", "Throttling"):
            return f"HeadObject refused: {text}"
        raise HotSiteUnavailable(f"HeadObject {change.key!r} on the hot site failed: {text}") from exc
    except Exception as exc:  # network errors, timeouts: the site, not the key
        raise HotSiteUnavailable(f"HeadObject {change.key!r} on the hot site failed: "
                                 f"{describe_s3_error(exc)[0]}") from exc
    return ListedObject(key=change.key, etag=strip_etag(head.get("ETag")), size=int(head["ContentLength"]),
                        last_modified=head["LastModified"].astimezone(dt.UTC))


def resolve(client: Any, bucket: str, changes: Sequence[Change], *, concurrency: int = 16,
            report: IngestReport) -> list[ListedObject]:
    """Listed objects for the changes: complete ones as they are, the others read with HeadObject (in
    parallel). The last change of a key wins (a feed may see a key rewritten twice in one batch)."""
    latest = {c.key: c for c in changes}
    complete = [c for c in latest.values() if c.complete]
    partial = [c for c in latest.values() if not c.complete]
    objects = [ListedObject(c.key, strip_etag(c.etag), int(c.size or 0), c.last_modified.astimezone(dt.UTC))
               for c in complete if c.last_modified is not None]
    if partial:
        report.head_requests += len(partial)
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(partial)))) as pool:
            for change, found in zip(partial, pool.map(lambda c: _head(client, bucket, c), partial), strict=True):
                if found is None:
                    report.gone += 1
                elif isinstance(found, str):
                    report.refused.append((change.key, found))
                else:
                    objects.append(found)
    documents = [o for o in objects if is_document(o.key, o.size)]
    report.not_documents += len(objects) - len(documents)
    return documents


def ingest(batch_changes: Iterable[Change], *, client: Any, bucket: str, store: TrackingStore,
           destination_bucket: str, concurrency: int = 16) -> IngestReport:
    """Resolve and register changes. Raises HotSiteUnavailable (nothing registered) when the hot site
    cannot answer; the caller then keeps its cursor and does not acknowledge."""
    started = time.monotonic()
    changes = list(batch_changes)
    report = IngestReport(changes=len(changes))
    candidates = [c for c in changes if is_document(c.key, c.size)]
    report.not_documents = len(changes) - len(candidates)
    objects = resolve(client, bucket, candidates, concurrency=concurrency, report=report)
    if objects:
        result = store.register(objects, source_bucket=bucket, destination_bucket=destination_bucket)
        report.registered_new, report.registered_changed, report.days = result.new, result.changed, result.days
        report.unchanged = len(objects) - result.new - result.changed
    seen = [c.seen_at for c in changes if c.seen_at is not None]
    report.oldest_seen_at = min(seen) if seen else None
    report.duration_s = time.monotonic() - started
    return report


def ingest_batch(batch: FeedBatch, **kwargs: Any) -> IngestReport:
    """`ingest` a feed's batch, then acknowledge it (only once registered)."""
    report = ingest(batch.changes, **kwargs)
    if batch.acknowledge is not None:
        batch.acknowledge()
    return report
