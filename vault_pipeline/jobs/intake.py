"""reconciliation_sweep_job and its schedule (VAULT_SWEEP_CRON, UTC; hourly by default)."""

from __future__ import annotations

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

from vault_pipeline.assets.intake import hot_bucket_sweep
from vault_pipeline.jobs.runs import run_in_flight

reconciliation_sweep_job = define_asset_job(
    name="reconciliation_sweep_job",
    selection=AssetSelection.assets(hot_bucket_sweep),
    description="Lists the whole hot bucket in parallel key ranges and registers every document.",
)

def build_reconciliation_sweep_schedule(cron: str) -> ScheduleDefinition:
    @schedule(
        name="reconciliation_sweep_schedule",
        job=reconciliation_sweep_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description="The reconciliation sweep behind the change feeds (the only detection of an OVH site). "
        "A tick while a sweep still runs is skipped: that sweep is the one to finish.",
    )
    def reconciliation_sweep_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        running = run_in_flight(context.instance, reconciliation_sweep_job.name)
        if running:
            return SkipReason(f"sweep run {running} has not finished")
        return RunRequest(tags={"vault/trigger": "reconciliation_sweep_schedule"})

    return reconciliation_sweep_schedule
