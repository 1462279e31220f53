"""hot_bucket_sensor: notices new and changed documents on the hot site and requests one run per day.

Each tick pages through ListObjectsV2 (never a single page), registers every page in PostgreSQL in
bulk, and stops paging when its time budget is spent, keeping the continuation token in the cursor: a
sweep of a huge bucket spans several ticks and a tick stays well under Dagster's 60 s sensor timeout.
Runs are requested from the database's view (days with pending rows), not from what this tick saw, so
a tick that failed after registering objects loses nothing: the next tick requests their run. The
run_key (day + newest pending change + hour) makes repeated requests for the same work harmless.
"""


import datetime as dt
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from vault_pipeline.partitions import partition_key_for
from vault_pipeline.replication.inventory import list_page
from vault_pipeline.resources import ColdSiteResource, S3SiteResource, TrackingDatabaseResource


@dataclass
class SweepCursor:
    token: str | None = None  # continuation token of the sweep in progress
    sweep_started: str | None = None
    sweeps_completed: int = 0
    objects_listed: int = 0  # in the sweep in progress

    @classmethod
    def parse(cls, raw: str | None) -> "SweepCursor":
        if not raw:
            return cls()
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError):
            return cls()  # an unreadable cursor only costs a fresh sweep

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def build_hot_bucket_sensor(
    *,
    job: Any,  # JobDefinition or the unresolved asset job from define_asset_job
    minimum_interval_seconds: int,
    tick_budget_seconds: float,
    backlog_warning_threshold: int,
    page_size: int = 1000,
) -> SensorDefinition:
    @sensor(
        name="hot_bucket_sensor",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Lists the hot bucket (resuming across ticks), registers new or changed documents and "
        "requests one replication run per affected day.",
    )
    def hot_bucket_sensor(
        context: SensorEvaluationContext,
        hot_site: S3SiteResource,
        cold_site: ColdSiteResource,
        tracking_db: TrackingDatabaseResource,
    ) -> SensorResult:
        started = time.monotonic()
        cursor = SweepCursor.parse(context.cursor)
        store = tracking_db.store()
        client = hot_site.client()
        if cursor.token is None:
            cursor.sweep_started = dt.datetime.now(dt.UTC).isoformat()
            cursor.objects_listed = 0
        pages = new = changed = 0
        while True:
            page = list_page(client, hot_site.bucket, cursor.token, page_size)
            pages += 1
            cursor.objects_listed += len(page.objects)
            if page.objects:
                result = store.register(page.objects, source_bucket=hot_site.bucket,
                                        destination_bucket=cold_site.bucket)
                new += result.new
                changed += result.changed
            cursor.token = page.next_token
            if cursor.token is None:
                cursor.sweeps_completed += 1
                break
            if time.monotonic() - started > tick_budget_seconds:
                break
        hour = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H")
        run_requests = []
        for day, count, latest in store.days_needing_runs(hot_site.bucket):
            partition = partition_key_for(day)
            run_requests.append(RunRequest(
                run_key=f"{partition}|{latest.isoformat()}|{hour}",
                partition_key=partition,
                run_config={"ops": {"hot_inventory": {"config": {"rescan_hot_bucket": False}}}},
                tags={"vault/trigger": "hot_bucket_sensor", "vault/pending_objects": str(count)},
            ))
        pending = store.pending_count(hot_site.bucket)
        if pending > backlog_warning_threshold:
            context.log.warning(f"replication backlog: {pending} objects pending (threshold "
                                f"{backlog_warning_threshold})")
        state = "sweep complete" if cursor.token is None else "sweep continues next tick"
        context.log.info(f"{pages} page(s), {new} new, {changed} changed, {len(run_requests)} day(s) to run, "
                         f"{pending} pending; {state}; {time.monotonic() - started:.1f}s")
        return SensorResult(run_requests=run_requests, cursor=cursor.dump())

    return hot_bucket_sensor
