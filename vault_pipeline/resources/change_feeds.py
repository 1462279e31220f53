"""Which resource serves each change feed (VAULT_CHANGE_FEEDS), and what such a resource offers.

Each feed's external system has its ConfigurableResource (the SeaweedFS filer, the SQS queue, the
application's database); hot_bucket_sensor requires the resources of the enabled feeds only, and asks each
for its feed. A resource caches its feed per process (sensors tick every few seconds; a feed may hold a
connection pool or a channel).
"""

from __future__ import annotations

from typing import Protocol

from vault_pipeline.intake.changes import ChangeFeed

# feed name (VAULT_CHANGE_FEEDS) -> resource key
FEED_RESOURCE_KEYS = {"seaweedfs-filer": "seaweedfs_filer", "sqs": "sqs_queue", "app-table": "application_db"}


class ChangeFeedResource(Protocol):
    def feed(self, *, hot_bucket: str) -> ChangeFeed: ...
