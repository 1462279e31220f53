"""The hot SeaweedFS filer as a Dagster resource: serves the "seaweedfs-filer" change feed."""

from __future__ import annotations

from dagster import ConfigurableResource

from vault_pipeline.intake.changes import ChangeFeed
from vault_pipeline.intake.filer_feed import SeaweedFilerFeed
from vault_pipeline.resources.change_feeds import FeedCache

_feeds: FeedCache[SeaweedFilerFeed] = FeedCache()


class SeaweedFilerResource(ConfigurableResource):
    """The filer of the hot SeaweedFS (VAULT_SEAWEEDFS_FILER): "host:port" (its gRPC on port + 10000) or
    "host:port.grpcPort"; and the folder its S3 buckets live in (VAULT_SEAWEEDFS_BUCKETS_PATH)."""

    address: str
    buckets_path: str = "/buckets"

    def feed(self, *, hot_bucket: str) -> ChangeFeed:
        """One feed per filer and bucket per process (Dagster rebuilds resources on every tick)."""
        return _feeds.get((self.address, self.buckets_path, hot_bucket),
                          lambda: SeaweedFilerFeed(self.address, hot_bucket, buckets_path=self.buckets_path))
