"""Alert sensors: failed ERROR checks and failed runs, one alert per distinct failure, then a recovery.

* `check_alert_sensor` reads new asset check evaluations with the supported API,
  `event_log_storage.get_asset_check_execution_history` (no deprecated event-log queries). That API
  returns rows newest first and pages *backwards* (`cursor` = "ids below"), and a row is created when
  the check is *planned* and only updated when it completes, so "everything above the highest id seen"
  would skip a check that was still running. The cursor therefore keeps, per check, the id below which
  everything is settled (`after`) plus the ids above it already handled (`seen`); a planned row whose run
  has finished without an evaluation (skipped, or the run failed: the run alert covers it) is settled.
  This sensor also delivers every pending notification, so a webhook that was down is retried on its
  next tick whichever sensor raised the alert.
* `run_failure_alert_sensor` / `run_recovery_alert_sensor` (Dagster run status sensors) open and resolve
  alerts keyed by job + partition.

Deduplication lives in PostgreSQL (vault_pipeline/alerting/state.py), not in the cursors: the cursors
only save work, the alert table decides what is sent, atomically, across ticks and processes.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    PartitionKeyRange,
    RunFailureSensorContext,
    RunsFilter,
    RunStatusSensorContext,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from vault_pipeline.alerting import Alert, AlertDispatcher
from vault_pipeline.alerting.payload import day_list, key_list, partition_bounds, partition_label
from vault_pipeline.alerting.state import Notification
from vault_pipeline.dagster_compat import (  # no public equivalent: see dagster_compat.py
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)
from vault_pipeline.partitions import day_range
from vault_pipeline.resources.alerts import AlertsResource
from vault_pipeline.resources.s3_sites import S3SiteResource
from vault_pipeline.resources.tracking_db import TrackingDatabaseResource

HISTORY_PAGE = 200
FIRST_TICK_MAX_RECORDS = 2000  # per check, when there is no cursor yet: older history is superseded
MAX_ERROR_CHARS = 500
MAX_KEY_HASHES = 100_000  # read from a check's `failing_key_hashes` (cold_copies' checks publish up to 1,000)
CHECK_SENSOR_NAME = "check_alert_sensor"
RUN_FAILURE_SENSOR_NAME = "run_failure_alert_sensor"
RUN_RECOVERY_SENSOR_NAME = "run_recovery_alert_sensor"


# -- check evaluations ---------------------------------------------------------------------------
@dataclass
class CheckProgress:
    after: int | None = None  # every row with id <= after is settled
    seen: list[int] = field(default_factory=list)  # settled rows above `after`


@dataclass
class AlertSensorCursor:
    checks: dict[str, CheckProgress] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> AlertSensorCursor:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            return cls({k: CheckProgress(v.get("after"), list(v.get("seen", []))) for k, v in data["checks"].items()})
        except (ValueError, TypeError, KeyError, AttributeError):
            return cls()  # an unreadable cursor re-reads history; the alert table prevents duplicates

    def dump(self) -> str:
        return json.dumps({"checks": {k: {"after": v.after, "seen": v.seen} for k, v in sorted(self.checks.items())}},
                          sort_keys=True)


def new_check_records(
    instance: DagsterInstance, check_key: AssetCheckKey, after: int | None,
) -> list[AssetCheckExecutionRecord]:
    """Rows with id > `after`, newest first (the API pages backwards from the newest row)."""
    records: list[AssetCheckExecutionRecord] = []
    page_cursor: int | None = None
    while True:
        page = instance.event_log_storage.get_asset_check_execution_history(
            check_key, limit=HISTORY_PAGE, cursor=page_cursor)
        for record in page:
            if after is not None and record.id <= after:
                return records
            records.append(record)
        if len(page) < HISTORY_PAGE or (after is None and len(records) >= FIRST_TICK_MAX_RECORDS):
            return records
        page_cursor = page[-1].id


def _runs_by_id(instance: DagsterInstance, run_ids: Iterable[str]) -> dict[str, DagsterRun]:
    ids = sorted(set(run_ids))
    if not ids:
        return {}
    return {run.run_id: run for run in instance.get_runs(filters=RunsFilter(run_ids=ids))}


def run_partition_label(run: DagsterRun | None, partition: str | None = None) -> str:
    tags = run.tags if run is not None else {}
    return partition_label(partition or tags.get(PARTITION_NAME_TAG), tags.get(ASSET_PARTITION_RANGE_START_TAG),
                           tags.get(ASSET_PARTITION_RANGE_END_TAG))


def _plain(value: Any) -> Any:
    """A MetadataValue's plain value (JSON list, text, markdown, number...), defensively."""
    try:
        return getattr(value, "value", value)
    except Exception:
        return None


def check_alert(record: AssetCheckExecutionRecord, run: DagsterRun | None) -> tuple[Alert, dt.datetime] | None:
    """The alert (or the passing result, as an Alert of the same key) of one completed evaluation."""
    evaluation = record.evaluation
    if evaluation is None or record.event is None:
        return None
    metadata = {name: _plain(value) for name, value in (evaluation.metadata or {}).items()}
    label = run_partition_label(run, evaluation.partition or record.partition)
    days = day_list(metadata.get("day"), metadata.get("days"))
    bounds = partition_bounds(label)
    if not days and bounds and bounds[0] == bounds[1]:
        days = (label,)  # a one-day evaluation whose metadata does not name its day
    details: dict[str, Any] = {  # counts and flags only: long texts stay in the check's own metadata
        name: value for name, value in metadata.items() if isinstance(value, bool | int | float)
    }
    if evaluation.blocking is not None:
        details["blocking"] = evaluation.blocking
    asset = evaluation.asset_key.to_user_string()
    severity = evaluation.severity.value if isinstance(evaluation.severity, AssetCheckSeverity) else "ERROR"
    alert = Alert(
        kind="check", subject=f"{asset}:{evaluation.check_name}", partition=label, severity=severity,
        asset=asset, check=evaluation.check_name, run_id=record.run_id,
        failing_keys=key_list(metadata.get("failing_keys")), days=days, description=evaluation.description,
        details=details, key_hashes=key_list(metadata.get("failing_key_hashes"), limit=MAX_KEY_HASHES),
    )
    return alert, dt.datetime.fromtimestamp(record.event.timestamp, dt.UTC)


@dataclass
class CheckTally:
    opened: int = 0
    extended: int = 0  # open alerts that found new failing objects (one notification each)
    resolved: int = 0

    def add(self, other: CheckTally) -> None:
        self.opened, self.extended, self.resolved = (
            self.opened + other.opened, self.extended + other.extended, self.resolved + other.resolved)

    def count(self, notification: Notification | None) -> None:
        if notification is not None and notification.transition == "extend":
            self.extended += 1
        elif notification is not None:
            self.opened += 1


def process_check_key(
    instance: DagsterInstance, dispatcher: AlertDispatcher, check_key: AssetCheckKey, progress: CheckProgress,
) -> tuple[CheckProgress, CheckTally]:
    """Apply the new evaluations of one check; returns the new progress and what it opened, extended, resolved.

    Per alert key: when the newest evaluation passed, only it is applied (it resolves); else every failure
    since the last pass, oldest first, so objects that failed in an evaluation a newer one no longer
    shows (repaired, or pushed beyond the shown list, before this tick) are still announced.
    """
    records = new_check_records(instance, check_key, progress.after)
    seen = set(progress.seen)
    fresh = [r for r in records if r.id not in seen]
    runs = _runs_by_id(instance, [r.run_id for r in fresh])
    in_progress: list[int] = []
    evaluations: dict[str, list[tuple[dt.datetime, int, bool, Alert]]] = {}
    for record in fresh:
        if record.status == AssetCheckExecutionRecordStatus.PLANNED:
            run = runs.get(record.run_id)
            if run is not None and not run.is_finished:
                in_progress.append(record.id)  # still running: look again next tick
            else:
                seen.add(record.id)  # never evaluated (skipped, or its run failed: the run alert covers it)
            continue
        seen.add(record.id)
        found = check_alert(record, runs.get(record.run_id))
        if found is None:
            continue
        alert, at = found
        passed = record.status == AssetCheckExecutionRecordStatus.SUCCEEDED
        if not passed and alert.severity != AssetCheckSeverity.ERROR.value:
            continue  # WARN failures are shown in the UI, not alerted
        evaluations.setdefault(alert.key, []).append((at, record.id, passed, alert))
    tally = CheckTally()
    to_apply = []
    for items in evaluations.values():
        items.sort(key=lambda item: item[:2])
        last_pass = max((i for i, item in enumerate(items) if item[2]), default=-1)
        # the latest evaluation passed: it alone; else every failure since the last pass, oldest first
        to_apply += items[-1:] if last_pass == len(items) - 1 else items[last_pass + 1:]
    for at, _id, passed, alert in sorted(to_apply, key=lambda item: item[:2]):
        if passed:
            tally.resolved += len(dispatcher.resolve_covered("check", alert.subject, alert.partition,
                                                             observed_at=at, run_id=alert.run_id))
        else:
            tally.count(dispatcher.raise_alert(alert, observed_at=at))
    all_ids = [r.id for r in records] + ([progress.after] if progress.after is not None else [])
    if in_progress:
        after = min(in_progress) - 1
        new = CheckProgress(after=after, seen=sorted(i for i in seen if i > after))
    else:
        new = CheckProgress(after=max(all_ids, default=0), seen=[])
    return new, tally


# -- runs ----------------------------------------------------------------------------------------
def _run_time(instance: DagsterInstance, run: DagsterRun) -> dt.datetime:
    record = instance.get_run_record_by_id(run.run_id)
    if record is not None and record.end_time:
        return dt.datetime.fromtimestamp(record.end_time, dt.UTC)
    if record is not None:
        return record.update_timestamp.astimezone(dt.UTC)
    return dt.datetime.now(dt.UTC)


def _partition_tags(run: DagsterRun) -> dict[str, str]:
    names = (PARTITION_NAME_TAG, ASSET_PARTITION_RANGE_START_TAG, ASSET_PARTITION_RANGE_END_TAG)
    return {name: run.tags[name] for name in names if name in run.tags}


def _newer_success(instance: DagsterInstance, run: DagsterRun, after: dt.datetime) -> DagsterRun | None:
    """A later successful run of the same job and partition: the failure is already fixed."""
    runs = instance.get_runs(filters=RunsFilter(
        job_name=run.job_name, statuses=[DagsterRunStatus.SUCCESS], tags=_partition_tags(run), updated_after=after,
    ), limit=5)
    tags = _partition_tags(run)
    return next((r for r in runs if r.run_id != run.run_id and _partition_tags(r) == tags), None)


def run_failure_alert(
    context: RunFailureSensorContext, tracking_db: TrackingDatabaseResource, hot_site: S3SiteResource,
) -> Alert:
    run = context.dagster_run
    label = run_partition_label(run)
    errors = []
    failed_steps = []
    for event in context.get_step_failure_events():
        failed_steps.append(event.step_key)
        error = getattr(event.event_specific_data, "error", None)
        if error is not None and getattr(error, "message", None):
            head, sep, rest = error.message.strip().partition(": ")
            # "dagster._core.definitions.events.Failure: 3 object(s)..." -> "3 object(s)..."
            errors.append(rest if sep and head.rsplit(".", 1)[-1] == error.cls_name else error.message.strip())
    message = errors[0] if errors else (context.failure_event.message or "run failed")
    failing: tuple[str, ...] = ()
    days: tuple[str, ...] = ()
    bounds = partition_bounds(label)
    if bounds:
        first, last = day_range(PartitionKeyRange(*bounds))
        days = (bounds[0],) if bounds[0] == bounds[1] else ()
        try:
            rows = tracking_db.store().failures(source_bucket=hot_site.bucket, first_day=first, last_day=last,
                                                limit=20)
            failing = tuple(r["s3_key"] for r in rows)
        except Exception as exc:  # the manifest may be what failed; the alert goes out without the keys
            context.log.warning(f"failed objects of {label} unavailable: {type(exc).__name__}")
    details: dict[str, Any] = {"failed_steps": failed_steps, "error": message[:MAX_ERROR_CHARS]}
    if failing:
        details["failed_objects_shown"] = len(failing)
    return Alert(
        kind="run", subject=run.job_name, partition=label, job=run.job_name, run_id=run.run_id,
        failing_keys=failing, days=days, description=message.splitlines()[0][:MAX_ERROR_CHARS] if message else None,
        details=details,
    )


# -- builder -------------------------------------------------------------------------------------
def build_alert_sensors(
    *,
    check_keys: Sequence[AssetCheckKey],
    monitored_jobs: Sequence[Any],
    minimum_interval_seconds: int,
) -> list[SensorDefinition]:
    """The three alert sensors, all running by default.

    `check_keys`: the asset checks to watch (every check of the Definitions). `monitored_jobs`: jobs
    whose failed runs alert; empty means every job of the code location.
    """
    keys = sorted(set(check_keys), key=lambda k: k.to_user_string())
    jobs = list(monitored_jobs) or None

    @sensor(
        name=CHECK_SENSOR_NAME,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Alerts once per failed ERROR asset check (per check and partition), sends a recovery "
        "notice when it passes again, and retries every undelivered alert notification.",
    )
    def check_alert_sensor(
        context: SensorEvaluationContext, alerts: AlertsResource, tracking_db: TrackingDatabaseResource,
    ) -> SensorResult:
        started = time.monotonic()
        cursor = AlertSensorCursor.parse(context.cursor)
        dispatcher = alerts.dispatcher(tracking_db.store())
        tally = CheckTally()
        for check_key in keys:
            name = check_key.to_user_string()
            progress, found = process_check_key(context.instance, dispatcher, check_key,
                                                cursor.checks.get(name, CheckProgress()))
            cursor.checks[name] = progress
            tally.add(found)
        report = dispatcher.deliver_pending(budget_seconds=alerts.delivery_budget_seconds)
        summary = (f"{len(keys)} check(s): {tally.opened} alert(s) opened, {tally.extended} extended with new "
                   f"failing objects, {tally.resolved} resolved; deliveries: {report.summary()}; "
                   f"{time.monotonic() - started:.1f}s")
        if report.failed:
            context.log.warning(summary)
        else:
            context.log.info(summary)
        return SensorResult(skip_reason=summary, cursor=cursor.dump())

    @run_failure_sensor(
        name=RUN_FAILURE_SENSOR_NAME,
        monitored_jobs=jobs,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Alerts once per failing job + partition (retries of the same failure do not repeat it).",
    )
    def run_failure_alert_sensor(
        context: RunFailureSensorContext, alerts: AlertsResource, tracking_db: TrackingDatabaseResource,
        hot_site: S3SiteResource,
    ) -> None:
        run = context.dagster_run
        at = _run_time(context.instance, run)
        newer = _newer_success(context.instance, run, at)
        if newer is not None:
            context.log.info(f"run {run.run_id[:8]} failed but {newer.run_id[:8]} of the same partition "
                             "succeeded since: no alert")
            return
        dispatcher = alerts.dispatcher(tracking_db.store())
        notification = dispatcher.raise_alert(run_failure_alert(context, tracking_db, hot_site), observed_at=at)
        # One quick attempt here keeps a tick (up to 5 runs) short; check_alert_sensor retries the rest.
        report = dispatcher.deliver_pending(budget_seconds=0, limit=1, attempts=1)
        state = "alert opened" if notification else "already alerted"
        context.log.info(f"{run.job_name} {run_partition_label(run)}: {state}; deliveries: {report.summary()}")

    @run_status_sensor(
        run_status=DagsterRunStatus.SUCCESS,
        name=RUN_RECOVERY_SENSOR_NAME,
        monitored_jobs=jobs,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Resolves the run alert of a job + partition (and the days a ranged run covers) when a "
        "run of it succeeds, and sends the recovery notice.",
    )
    def run_recovery_alert_sensor(
        context: RunStatusSensorContext, alerts: AlertsResource, tracking_db: TrackingDatabaseResource,
    ) -> None:
        run = context.dagster_run
        dispatcher = alerts.dispatcher(tracking_db.store())
        done = dispatcher.resolve_covered("run", run.job_name, run_partition_label(run),
                                          observed_at=_run_time(context.instance, run), run_id=run.run_id)
        if done:
            report = dispatcher.deliver_pending(budget_seconds=0, limit=len(done), attempts=1)
            context.log.info(f"{run.job_name} {run_partition_label(run)}: {len(done)} alert(s) resolved; "
                             f"deliveries: {report.summary()}")

    return [check_alert_sensor, run_failure_alert_sensor, run_recovery_alert_sensor]


def declared_check_keys(assets_and_checks: Iterable[Any]) -> list[AssetCheckKey]:
    """Every asset check key declared by these definitions (check definitions and assets' check specs)."""
    keys: set[AssetCheckKey] = set()
    for definition in assets_and_checks:
        keys.update(getattr(definition, "check_keys", None) or ())
    return sorted(keys, key=lambda k: k.to_user_string())

