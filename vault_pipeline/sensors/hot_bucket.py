"""hot_bucket_sensor: reads the change feeds, registers what they announce, requests the days' runs.

The sensor lists nothing: the whole-bucket listing is the reconciliation sweep's (a scheduled job, see
assets/intake.py). A tick reads each enabled feed from its cursor (kept in the sensor's cursor, one per
feed), registers the changes (HeadObject for what a feed does not know, then a bulk diff by key + ETag),
and requests runs from the database's view: days with pending rows, whoever registered them (a feed, the
sweep, a tick that failed after registering). Which runs, with which run_key, is replication/run_plan.py's
decision, from those days and what the run storage says of their runs: one run per day, one per shard for a
large day, and a new one after a run of the day failed or died. A feed's cursor moves only after its
changes are committed, and a queue's messages are deleted only then: a tick that dies anywhere loses nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from vault_pipeline.intake.changes import FeedUnavailable
from vault_pipeline.intake.ingest import HotSiteUnavailable, IngestReport, ingest_batch
from vault_pipeline.partitions import partition_key_for
from vault_pipeline.replication.run_plan import (
    FINISHED,
    IN_FLIGHT,
    DayBacklog,
    KnownRun,
    RetryPolicy,
    RunPlan,
    plan_runs,
)
from vault_pipeline.replication.shards import ShardPolicy
from vault_pipeline.resources import ColdSiteResource, S3SiteResource, TrackingDatabaseResource
from vault_pipeline.resources.change_feeds import FEED_RESOURCE_KEYS


@dataclass
class FeedCursors:
    feeds: dict[str, str | None] = field(default_factory=dict)  # feed name -> that feed's own cursor

    @classmethod
    def parse(cls, raw: str | None) -> FeedCursors:
        if not raw:
            return cls()
        try:
            feeds = json.loads(raw).get("feeds", {})
            return cls(feeds={str(k): (None if v is None else str(v)) for k, v in feeds.items()})
        except (ValueError, TypeError, AttributeError):
            # An unreadable cursor (or one from the listing sensor of before) only costs a re-read: every
            # feed starts from its beginning, and registration ignores what it already has.
            return cls()

    def dump(self) -> str:
        return json.dumps({"feeds": self.feeds}, sort_keys=True)


# Bounds of the tick's two questions to the run storage (runs in flight, finished runs): a day needs its
# newest few. A partition pushed out of a busy answer is asked for as if it had no runs: its run_key, if
# already used, waits for the next hour.
RUN_HISTORY_LIMIT = 1000
PARTITION_FILTER_MAX = 500  # beyond this many days, the job's runs are read without a partition filter


def partition_backlog(days: list[tuple[dt.date, int, dt.datetime]]) -> list[DayBacklog]:
    """Days with rows waiting, per partition: days before the first partition (or after the last) belong to
    it, so several days may make one partition's backlog."""
    merged: dict[str, DayBacklog] = {}
    for day, count, latest in days:
        partition = partition_key_for(day)
        seen = merged.get(partition)
        merged[partition] = DayBacklog(partition, count, latest) if seen is None else DayBacklog(
            partition, seen.objects + count, max(seen.latest, latest))
    return list(merged.values())


def _known_run(record: Any) -> KnownRun:
    run = record.dagster_run
    ended = record.end_time
    ended_at = (dt.datetime.fromtimestamp(ended, dt.UTC) if ended is not None
                else record.update_timestamp.replace(tzinfo=dt.UTC))
    return KnownRun(run.run_id, run.tags.get("dagster/partition", ""), run.status.value,
                    run.tags.get("dagster/run_key"), ended_at if run.status.value in FINISHED else None)


def replication_runs(instance: DagsterInstance, job_name: str, partitions: list[str],
                     lookback: dt.timedelta) -> list[KnownRun]:
    """The runs of `job_name` for these partitions that the plan needs: every one in flight, and the
    finished ones of the partitions with none in flight, updated within `lookback`. Two bounded queries."""
    if not partitions:
        return []

    def records(wanted: list[str], **filters: Any) -> list[KnownRun]:
        tags = {"dagster/partition": wanted} if len(wanted) <= PARTITION_FILTER_MAX else None
        found = instance.get_run_records(filters=RunsFilter(job_name=job_name, tags=tags, **filters),
                                         limit=RUN_HISTORY_LIMIT, order_by="update_timestamp")
        keep = set(wanted)
        return [run for run in map(_known_run, found) if run.partition in keep]

    in_flight = records(partitions, statuses=[DagsterRunStatus(s) for s in IN_FLIGHT])
    busy = {r.partition for r in in_flight}
    idle = [p for p in partitions if p not in busy]
    if not idle:
        return in_flight
    finished = records(idle, statuses=[DagsterRunStatus(s) for s in FINISHED],
                       updated_after=dt.datetime.now(dt.UTC) - lookback)
    return in_flight + finished


def plan_replication_runs(instance: DagsterInstance, store: Any, bucket: str, job_name: str, *,
                          shards: ShardPolicy, retry: RetryPolicy) -> RunPlan:
    backlog = partition_backlog(store.days_needing_runs(bucket))
    runs = replication_runs(instance, job_name, [d.partition for d in backlog], retry.lookback)
    return plan_runs(backlog, runs, now=dt.datetime.now(dt.UTC), shards=shards, retry=retry)


def run_requests(plan: RunPlan, trigger: str) -> list[RunRequest]:
    return [RunRequest(run_key=run.run_key, partition_key=run.partition,
                       tags={"vault/trigger": trigger, **run.tags()}) for run in plan.runs]


def build_hot_bucket_sensor(
    *,
    job: Any,  # JobDefinition or the unresolved asset job from define_asset_job
    minimum_interval_seconds: int,
    tick_budget_seconds: float,
    backlog_warning_threshold: int,
    feeds: Sequence[str] = (),
    max_changes: int = 20_000,
    head_concurrency: int = 16,
    shards: ShardPolicy | None = None,
    retry: RetryPolicy | None = None,
) -> SensorDefinition:
    shard_policy, retry_policy = shards or ShardPolicy(), retry or RetryPolicy()
    feed_keys = {name: FEED_RESOURCE_KEYS[name] for name in feeds}
    described = ", ".join(feeds) if feeds else "no change feed (the reconciliation sweep registers)"

    @sensor(
        name="hot_bucket_sensor",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        # By key rather than as typed parameters: which feed resources are required depends on the settings,
        # and Dagster takes resource requirements one way or the other, not both.
        required_resource_keys={"hot_site", "cold_site", "tracking_db", *feed_keys.values()},
        description=f"Reads the change feeds ({described}), registers new or changed documents and requests "
        "one replication run per day with pending documents (one per shard for a large day; again after a "
        "failed run, with a backoff).",
    )
    def hot_bucket_sensor(context: SensorEvaluationContext, **_resources: Any) -> SensorResult:
        # (A direct invocation, as in tests, also passes the required resources as keywords: the same objects
        # as context.resources.)
        started = time.monotonic()
        hot_site: S3SiteResource = context.resources.hot_site
        cold_site: ColdSiteResource = context.resources.cold_site
        tracking_db: TrackingDatabaseResource = context.resources.tracking_db
        cursors = FeedCursors.parse(context.cursor)
        store = tracking_db.store()
        summary: list[str] = []
        for position, (name, resource_key) in enumerate(feed_keys.items()):
            # Each remaining feed gets an equal share of what is left of the tick's budget.
            remaining = tick_budget_seconds - (time.monotonic() - started)
            budget = max(0.5, remaining / (len(feed_keys) - position))
            try:  # building the feed may fail too (the application's database is down): the same as reading it
                feed = getattr(context.resources, resource_key).feed(hot_bucket=hot_site.bucket)
                batch = feed.read(cursors.feeds.get(name), budget_seconds=budget, max_changes=max_changes)
                report = ingest_batch(batch, client=hot_site.client(), bucket=hot_site.bucket, store=store,
                                      destination_bucket=cold_site.bucket, concurrency=head_concurrency)
            except (HotSiteUnavailable, FeedUnavailable) as exc:  # cursor kept: read again next tick
                # One feed down neither stops the others nor the run requests; the tick's log says why.
                context.log.error(f"feed {name}: {exc}; nothing of it was registered, it is read again next tick")
                summary.append(f"{name}: unavailable")
                continue
            cursors.feeds[name] = batch.cursor
            summary.append(_describe(name, report, batch.caught_up, batch.skipped))
            for key, why in report.refused:
                context.log.warning(f"feed {name}: {key!r} not registered: {why} (the sweep will list it)")
        plan = plan_replication_runs(context.instance, store, hot_site.bucket, job.name, shards=shard_policy,
                                     retry=retry_policy)
        for note in plan.notes:
            context.log.info(note)
        requests = run_requests(plan, "hot_bucket_sensor")
        pending = store.pending_count(hot_site.bucket)
        if pending > backlog_warning_threshold:
            context.log.warning(f"replication backlog: {pending} objects pending (threshold "
                                f"{backlog_warning_threshold})")
        context.log.info("; ".join([*summary, f"{len(requests)} run(s) for {len(plan.partitions)} day(s), "
                                    f"{pending} pending",
                                    f"{time.monotonic() - started:.2f}s"]))
        return SensorResult(run_requests=requests, cursor=cursors.dump())

    return hot_bucket_sensor


def _describe(name: str, report: IngestReport, caught_up: bool, skipped: dict[str, int]) -> str:
    text = (f"{name}: {report.changes} change(s), {report.registered_new} new, {report.registered_changed} "
            f"changed, {report.unchanged} known")
    if report.gone:
        text += f", {report.gone} gone"
    if skipped:
        text += ", skipped " + ", ".join(f"{n} {why}" for why, n in sorted(skipped.items()))
    if report.oldest_seen_at is not None:
        text += f", oldest {max(0.0, (dt.datetime.now(dt.UTC) - report.oldest_seen_at).total_seconds()):.1f}s old"
    return text + ("" if caught_up else ", more to read")
