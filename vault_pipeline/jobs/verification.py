"""Re-auditing a day without copying: verification_job (the report) and cold_copies_checks_job (the checks).

Two jobs because the checks are blocking (they guard hot_deletions) and a failed blocking check skips
every downstream asset of its run, verification_report included: the report must be written precisely
when something is wrong. The rolling schedule runs both on the least recently verified days, enough of
them per day that every day with documents is audited at least every VAULT_VERIFICATION_PERIOD_DAYS days.
"""

import datetime as dt
import math
from typing import Any

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from vault_pipeline.assets.replication import cold_copies
from vault_pipeline.assets.verification import verification_report
from vault_pipeline.partitions import partition_key_for
from vault_pipeline.resources import S3SiteResource, TrackingDatabaseResource, VerificationSettingsResource

verification_job = define_asset_job(
    name="verification_job",
    selection=AssetSelection.assets(verification_report),
    description="Fixity audit report of one day (manifest, hot and cold compared), no copying.",
)
cold_copies_checks_job = define_asset_job(
    name="cold_copies_checks_job",
    selection=AssetSelection.checks_for_assets(cold_copies),
    description="The six asset checks of cold_copies for one day, no copying. A selection of checks alone has "
    "no asset to take its partitioning from: launch it with the tag dagster/partition=YYYY-MM-DD.",
)


def days_due(days: list[tuple[dt.date, dt.datetime | None]], period_days: int) -> list[dt.date]:
    """The least recently verified days, ceil(days / period) of them: a full rotation every period."""
    if not days:
        return []
    return [day for day, _ in days[: math.ceil(len(days) / period_days)]]


def build_verification_schedules(cron: str) -> list[ScheduleDefinition]:
    """Same days for both jobs: rolling_verification_schedule (the report) and rolling_checks_schedule."""
    return [_rolling_schedule(name, job, cron) for name, job in (
        ("rolling_verification_schedule", verification_job), ("rolling_checks_schedule", cold_copies_checks_job))]


def _rolling_schedule(name: str, job: Any, cron: str) -> ScheduleDefinition:
    @schedule(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"Runs {job.name} on the least recently verified days, so every day is audited within "
        "the verification period.",
    )
    def _schedule(
        context: ScheduleEvaluationContext,
        hot_site: S3SiteResource,
        tracking_db: TrackingDatabaseResource,
        verification: VerificationSettingsResource,
    ) -> list[RunRequest] | SkipReason:
        days = tracking_db.store().days_by_last_verification(hot_site.bucket)
        due = days_due(days, verification.period_days)
        if not due:
            return SkipReason("no documents yet")
        tick = context.scheduled_execution_time.strftime("%Y%m%d%H%M")
        requests = []
        for day in due:
            key = partition_key_for(day)
            # The checks job has no partitions of its own (see above): the partition travels as a tag.
            partition = {"partition_key": key} if job is verification_job else {}
            tags = {"vault/trigger": name, **({} if partition else {"dagster/partition": key})}
            requests.append(RunRequest(run_key=f"{job.name}|{key}|{tick}", tags=tags, **partition))
        return requests

    return _schedule
