"""journal_seal_job and the daily schedule that seals yesterday's journal (VAULT_JOURNAL_SEAL_CRON, UTC)."""

import datetime as dt

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

from vault_pipeline.assets.journal import journal_seal
from vault_pipeline.partitions import daily_partitions

journal_seal_job = define_asset_job(
    name="journal_seal_job",
    selection=AssetSelection.assets(journal_seal),
    description="Seals the write journal up to the partition's day (signed Merkle checkpoint per day).",
)


def day_to_seal(scheduled: dt.datetime) -> dt.date:
    """The day a tick seals: the UTC day before the tick, the last one that is over."""
    return scheduled.astimezone(dt.UTC).date() - dt.timedelta(days=1)


def build_journal_seal_schedule(cron: str) -> ScheduleDefinition:
    @schedule(
        name="journal_seal_schedule",
        job=journal_seal_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description="Seals yesterday's write journal (and any earlier day left unsealed).",
    )
    def _schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        day = day_to_seal(context.scheduled_execution_time)
        key = day.isoformat()
        if key < daily_partitions.get_first_partition_key():
            return SkipReason(f"{key} is before the first partition ({daily_partitions.get_first_partition_key()})")
        return RunRequest(run_key=f"journal_seal|{key}", partition_key=key,
                          tags={"vault/trigger": "journal_seal_schedule"})

    return _schedule
