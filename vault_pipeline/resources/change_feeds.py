"""Which resource serves each change feed (VAULT_CHANGE_FEEDS), and what such a resource offers.

Each feed's external system has its ConfigurableResource (the SeaweedFS filer, the SQS queue, the
application's database); hot_bucket_sensor requires the resources of the enabled feeds only, and asks each
for its feed. A resource caches its feed per process (sensors tick every few seconds; a feed may hold a
connection pool or a channel).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

from vault_pipeline.intake.changes import ChangeFeed

Feed = TypeVar("Feed", bound=ChangeFeed)

# feed name (VAULT_CHANGE_FEEDS) -> resource key
FEED_RESOURCE_KEYS = {"seaweedfs-filer": "seaweedfs_filer", "sqs": "sqs_queue", "app-table": "application_db"}


class ChangeFeedResource(Protocol):
    def feed(self, *, hot_bucket: str) -> ChangeFeed: ...


class FeedCache(Generic[Feed]):
    """The feeds of one kind, one per configuration and bucket per process (Dagster builds resources again
    on every tick; a feed may hold a pool, a client or a validated statement)."""

    def __init__(self) -> None:
        self._feeds: dict[Hashable, Feed] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], Feed]) -> Feed:
        """The feed of `key`, made by `make` the first time (a feed that could not be made is tried again
        at the next call)."""
        with self._lock:
            feed = self._feeds.get(key)
            if feed is None:
                feed = self._feeds[key] = make()
            return feed

    def close_all(self) -> None:
        """Close and forget every feed (tests dropping their databases, commands at exit)."""
        with self._lock:
            feeds = list(self._feeds.values())
            self._feeds.clear()
        for feed in feeds:
            feed.close()
