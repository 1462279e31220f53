"""The SQS queue that receives the hot bucket's S3 event notifications, as a Dagster resource.

The keys arrive as EnvVar (the UI shows only the variable names); empty keys sign with botocore's
credential chain (instance or container role, profile...). hot_bucket_sensor asks for the feed on every
tick and Dagster builds resources again for each tick, so the feed (and its client) is kept per process.
"""

from __future__ import annotations

from dagster import ConfigurableResource

from vault_pipeline.intake.changes import ChangeFeed
from vault_pipeline.intake.sqs_feed import SqsChangeFeed, SqsQueueConfig, make_sqs_client
from vault_pipeline.resources.change_feeds import FeedCache

_feeds: FeedCache[SqsChangeFeed] = FeedCache()


def shared_sqs_feed(config: SqsQueueConfig, hot_bucket: str) -> SqsChangeFeed:
    """One feed per queue configuration and bucket per process."""
    return _feeds.get((config, hot_bucket),
                      lambda: SqsChangeFeed(make_sqs_client(config), config.queue_url, hot_bucket))


def close_shared_sqs_feeds() -> None:
    """Close and forget every cached feed (tests, CLI commands at exit)."""
    _feeds.close_all()


class SqsQueueResource(ConfigurableResource):
    """VAULT_SQS_QUEUE_URL, VAULT_SQS_ENDPOINT (empty: AWS), VAULT_SQS_REGION and the queue's credentials."""

    queue_url: str
    endpoint_url: str = ""
    region: str = ""
    access_key_id: str = ""
    secret_access_key: str = ""
    session_token: str = ""

    def queue_config(self) -> SqsQueueConfig:
        return SqsQueueConfig(queue_url=self.queue_url, endpoint_url=self.endpoint_url, region=self.region,
                              access_key_id=self.access_key_id, secret_access_key=self.secret_access_key,
                              session_token=self.session_token)

    def feed(self, *, hot_bucket: str) -> ChangeFeed:
        return shared_sqs_feed(self.queue_config(), hot_bucket)
