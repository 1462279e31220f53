"""Completion webhook sensors (issue 17): a signed notice when a day's replication is complete, and the
delivery of every queued notice (alerting/completion.py keeps them in PostgreSQL).

* `replication_day_complete_sensor` (a run status sensor on SUCCESS of replication_job): for each day of the
  run's partition (a ranged run covers several), the day is complete when EVERY row of it in
  vault_secure.replication_status is replicated with verified_at set, and the latest evaluation of each
  check of cold_copies covering that day passed. Then it queues a `replication_day_complete` notice whose
  subject is "day/objects/last verification (epoch)": the same completed state is notified once however many
  runs or sensors see it, and a day that grows later (late objects) is notified again.
* `completion_webhook_sensor` delivers the due notices at each tick, within a budget: it is the retry path
  (with backoff) of every notice, those the lead's backup and restore code queue included.

Both are RUNNING by default when VAULT_COMPLETION_WEBHOOK_URLS is set, STOPPED otherwise.

"The latest evaluation covering the day", read with the supported history API
(`event_log_storage.get_asset_check_execution_history`, newest first, as check_alert_sensor reads it):
an evaluation covers a day by its partition or, for a ranged run (whose evaluation has no partition), by the
run's range tags. A run of one shard ("vault/shard" = i/n) audits only its slice of the day, so the day's
verdict is the newest whole-day evaluation, or the newest evaluations of all n shards; any failure newer than
that verdict makes the day not complete. A planned evaluation (still running, or never run) is not a verdict.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetCheckKey,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    PartitionKeyRange,
    RunsFilter,
    RunStatusSensorContext,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    run_status_sensor,
    sensor,
)

from vault_pipeline.alerting.completion import DayTally, replication_days
from vault_pipeline.alerting.payload import partition_bounds
from vault_pipeline.checks.cold_copies import CHECK_SPECS
from vault_pipeline.dagster_compat import AssetCheckExecutionRecord, AssetCheckExecutionRecordStatus
from vault_pipeline.partitions import daily_partitions, day_range, partition_key_for
from vault_pipeline.replication.shards import Shard, ShardError
from vault_pipeline.resources.completion_webhooks import NOT_CONFIGURED, CompletionWebhooksResource
from vault_pipeline.resources.s3_sites import ColdSiteResource, S3SiteResource
from vault_pipeline.resources.tracking_db import TrackingDatabaseResource
from vault_pipeline.sensors.alerts import run_partition_label

DELIVERY_SENSOR_NAME = "completion_webhook_sensor"
DAY_SENSOR_NAME = "replication_day_complete_sensor"
EVENT = "replication_day_complete"
HISTORY_PAGE = 200
MAX_HISTORY = 5000  # evaluations read per check before the undecided days are judged not complete
QUICK_DELIVERY_SECONDS = 5.0
MAX_DAYS = 366  # a ranged run longer than this notifies its first MAX_DAYS days (each costs a query)


# -- the checks' verdict per day ------------------------------------------------------------------
@dataclass
class DayVerdict:
    """One check on one day, fed its evaluations newest first until it is decided."""

    passed: bool | None = None  # None: undecided
    shards: dict[int, set[int]] = field(default_factory=dict)  # shard count -> indexes that passed

    def feed(self, passed: bool, shard: Shard | None) -> None:
        if self.passed is not None:
            return
        if not passed:
            self.passed = False  # a failure newer than any verdict
        elif shard is None:
            self.passed = True  # the whole day, newest
        else:
            seen = self.shards.setdefault(shard.count, set())
            seen.add(shard.index)
            if len(seen) == shard.count:
                self.passed = True  # every slice of the day, each by its newest evaluation


def _runs_by_id(instance: DagsterInstance, run_ids: Iterable[str]) -> dict[str, DagsterRun]:
    ids = sorted(set(run_ids))
    return {run.run_id: run for run in instance.get_runs(filters=RunsFilter(run_ids=ids))} if ids else {}


def _covered_keys(record: AssetCheckExecutionRecord, run: DagsterRun | None) -> list[str]:
    """The partition keys an evaluation judged: its own, else the range of its run."""
    evaluation = record.evaluation
    label = (evaluation.partition if evaluation is not None else None) or record.partition
    if not label:
        label = run_partition_label(run)
    bounds = partition_bounds(label)
    if bounds is None:
        return []
    return daily_partitions.get_partition_keys_in_range(PartitionKeyRange(*bounds))


def _shard(run: DagsterRun | None) -> Shard | None:
    try:
        return Shard.from_tags(run.tags) if run is not None else None
    except ShardError:
        return None  # its check audited the whole range (checks/cold_copies.py day_audit)


def check_verdicts(
    instance: DagsterInstance, check_key: AssetCheckKey, keys: Sequence[str],
) -> dict[str, DayVerdict]:
    """The verdict of one check for each partition key, from its history newest first."""
    verdicts = {key: DayVerdict() for key in keys}
    cursor: int | None = None
    read = 0
    while read < MAX_HISTORY and any(v.passed is None for v in verdicts.values()):
        page = instance.event_log_storage.get_asset_check_execution_history(
            check_key, limit=HISTORY_PAGE, cursor=cursor)
        runs = _runs_by_id(instance, [r.run_id for r in page])
        for record in page:
            if record.status == AssetCheckExecutionRecordStatus.PLANNED or record.evaluation is None:
                continue  # running, or never evaluated: not a verdict
            run = runs.get(record.run_id)
            passed = record.status == AssetCheckExecutionRecordStatus.SUCCEEDED
            for key in _covered_keys(record, run):
                if key in verdicts:
                    verdicts[key].feed(passed, _shard(run))
        read += len(page)
        if len(page) < HISTORY_PAGE:
            break
        cursor = page[-1].id
    return verdicts


# -- a run's days ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DayCompletion:
    key: str  # the partition key
    tally: DayTally
    checks_passed: tuple[str, ...]
    checks_not_passed: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return self.tally.complete and not self.checks_not_passed

    @property
    def subject(self) -> str:
        verified = self.tally.last_verified_at
        epoch = f"{verified.timestamp():.6f}" if verified else "0"
        return f"{self.key}/{self.tally.objects}/{epoch}"

    def facts(self, run_id: str) -> dict[str, Any]:
        verified = self.tally.last_verified_at
        return {"day": self.key, "objects": self.tally.objects, "bytes": self.tally.bytes,
                "last_verified_at": verified.astimezone(dt.UTC).isoformat() if verified else None,
                "checks_passed": list(self.checks_passed), "run_id": run_id}


def run_partition_keys(run: DagsterRun) -> list[str]:
    bounds = partition_bounds(run_partition_label(run))
    if bounds is None:
        return []
    return daily_partitions.get_partition_keys_in_range(PartitionKeyRange(*bounds))[:MAX_DAYS]


def day_completions(
    instance: DagsterInstance, store: Any, source_bucket: str, keys: Sequence[str],
    check_keys: Sequence[AssetCheckKey],
) -> list[DayCompletion]:
    """Each partition key's rows and checks. The edge partitions hold the days beyond them (partitions.py)."""
    if not keys:
        return []
    first, _ = day_range(PartitionKeyRange(keys[0], keys[0]))
    _, last = day_range(PartitionKeyRange(keys[-1], keys[-1]))
    tallies = {key: DayTally() for key in keys}
    for day, tally in replication_days(store.pool, source_bucket, first, last).items():
        key = partition_key_for(day)
        if key in tallies:
            tallies[key].add(tally)
    rows_complete = [key for key in keys if tallies[key].complete]
    verdicts = {check.name: check_verdicts(instance, check, rows_complete) for check in check_keys}
    return [DayCompletion(
        key, tallies[key],
        checks_passed=tuple(sorted(n for n, v in verdicts.items() if key in v and v[key].passed)),
        checks_not_passed=tuple(sorted(n for n, v in verdicts.items() if key not in v or not v[key].passed)),
    ) for key in keys]


def describe(day: DayCompletion) -> str:
    tally = day.tally
    if not tally.objects:
        return f"{day.key}: no object"
    if not tally.complete:
        return f"{day.key}: {tally.verified} of {tally.objects} object(s) verified, not complete"
    return f"{day.key}: every object verified, check(s) {', '.join(day.checks_not_passed)} not passed (yet)"


# -- builder --------------------------------------------------------------------------------------
def build_completion_sensors(
    replication_job: Any, *,  # JobDefinition or the unresolved asset job from define_asset_job
    configured: bool, minimum_interval_seconds: int, check_keys: Sequence[AssetCheckKey] | None = None,
) -> list[SensorDefinition]:
    """[completion_webhook_sensor, replication_day_complete_sensor], RUNNING by default when `configured`
    (VAULT_COMPLETION_WEBHOOK_URLS set: resources/completion_webhooks.completion_webhooks_configured()).
    `check_keys`: the checks a complete day must have passed (default: every check of cold_copies)."""
    checks = list(check_keys) if check_keys is not None else [spec.key for spec in CHECK_SPECS]
    status = DefaultSensorStatus.RUNNING if configured else DefaultSensorStatus.STOPPED

    @sensor(
        name=DELIVERY_SENSOR_NAME,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=status,
        description="Delivers the queued completion notices (a day replicated, a backup, a restore) to "
        "VAULT_COMPLETION_WEBHOOK_URLS, signed, and retries those that failed, with backoff.",
    )
    def completion_webhook_sensor(
        context: SensorEvaluationContext, completion_webhooks: CompletionWebhooksResource,
        tracking_db: TrackingDatabaseResource,
    ) -> SkipReason:
        if not completion_webhooks.configured:
            return SkipReason(NOT_CONFIGURED)
        started = time.monotonic()
        report = completion_webhooks.deliver(tracking_db.store())
        text = f"completion notices: {report.summary()}; {time.monotonic() - started:.1f}s"
        if report.errors or report.unconfigured:
            context.log.warning(text)
        return SkipReason(text)

    @run_status_sensor(
        run_status=DagsterRunStatus.SUCCESS,
        name=DAY_SENSOR_NAME,
        monitored_jobs=[replication_job],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=status,
        description="When a replication run succeeds, queues a signed replication_day_complete notice for each "
        "of its days whose objects are all verified and whose cold_copies checks all passed (once per "
        "completed state).",
    )
    def replication_day_complete_sensor(
        context: RunStatusSensorContext, completion_webhooks: CompletionWebhooksResource,
        tracking_db: TrackingDatabaseResource, hot_site: S3SiteResource, cold_site: ColdSiteResource,
    ) -> None:
        if not completion_webhooks.configured:
            return
        run = context.dagster_run
        store = tracking_db.store()
        days = day_completions(context.instance, store, hot_site.bucket, run_partition_keys(run), checks)
        queued = 0
        vault = {"hot_bucket": hot_site.bucket, "cold_bucket": cold_site.bucket}
        for day in days:
            if not day.complete:
                context.log.info(describe(day))
                continue
            new = completion_webhooks.enqueue(store, EVENT, day.subject, day.facts(run.run_id), vault=vault)
            queued += int(new)
            context.log.info(f"{day.key}: complete ({day.tally.objects} object(s)); "
                             + ("notice queued" if new else "already notified"))
        if queued:  # one quick pass now (a few seconds at most); completion_webhook_sensor retries what fails
            budget = min(QUICK_DELIVERY_SECONDS, completion_webhooks.delivery_budget_seconds)
            report = completion_webhooks.deliver(store, budget_seconds=budget)
            context.log.info(f"completion notices: {report.summary()}")

    return [completion_webhook_sensor, replication_day_complete_sensor]
