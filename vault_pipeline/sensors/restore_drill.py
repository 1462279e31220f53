"""restore_drill_followup_sensor: finishes restore drills whose restores complete after their run.

A Bulk restore from Deep Archive takes up to 48 h and the drill schedule is weekly: without a follow-up,
results would arrive a week late, after the restored copies expired. While any drill item is pending,
this sensor requests a restore_drill_job run with `sample_size: 0` (read back what has been restored, no
new sample) every VAULT_RESTORE_DRILL_POLL_MINUTES, never while a drill run is in flight.
"""


import time

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from vault_pipeline.jobs.restore_drill import DRILL_OP, restore_drill_job
from vault_pipeline.jobs.runs import run_in_flight
from vault_pipeline.resources import ColdSiteResource, TrackingDatabaseResource
from vault_pipeline.retrieval.drill_store import DrillStore


def build_restore_drill_followup_sensor(minimum_interval_seconds: int) -> SensorDefinition:
    @sensor(
        name="restore_drill_followup_sensor",
        job=restore_drill_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="While restore drill items are pending (restores in progress), requests a run that reads "
        "back what has been restored. Takes no new sample.",
    )
    def restore_drill_followup_sensor(
        context: SensorEvaluationContext, cold_site: ColdSiteResource, tracking_db: TrackingDatabaseResource,
    ) -> RunRequest | SkipReason:
        pending = DrillStore(tracking_db.store()).pending_count(cold_site.bucket)
        if not pending:
            return SkipReason("no restore drill item is pending")
        running = run_in_flight(context.instance, restore_drill_job.name)
        if running:
            return SkipReason(f"{pending} item(s) pending; run {running} is on it")
        slot = int(time.time() // minimum_interval_seconds)
        return RunRequest(
            run_key=f"restore-drill-followup:{slot}",  # a repeated tick in the same interval asks nothing new
            run_config={"ops": {DRILL_OP: {"config": {"sample_size": 0}}}},
            tags={"vault/restore-drill": "followup"},
        )

    return restore_drill_followup_sensor
