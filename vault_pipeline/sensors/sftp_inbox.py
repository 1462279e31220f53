"""sftp_inbox_sensor: lists the SFTP inbox, registers stable files, requests transfer runs.

RUNNING by default when SFTP_HOST is set. A tick lists for at most its budget (intake/sftp_inbox.py keeps
the directories still to list in the cursor, so a large inbox is listed over several ticks), on an SFTP
session kept open across ticks. It requests a run of sftp_transfer_job when files are waiting and no run of
the job is already in flight (one run drains everything claimable, SFTP_MAX_WORKERS files at a time; runs on
other machines could only share the same claims). A server that cannot be used (unreachable, host key or
authentication refused) fails the tick with the reason, where the UI shows it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from vault_pipeline.assets.sftp import NOT_CONFIGURED
from vault_pipeline.intake.sftp_inbox import ScanState, scan_inbox
from vault_pipeline.partitions import partition_key_for
from vault_pipeline.replication.run_plan import IN_FLIGHT
from vault_pipeline.resources import TrackingDatabaseResource
from vault_pipeline.resources.sftp_inbox import SftpInboxResource


def build_sftp_inbox_sensor(job: Any, *,  # JobDefinition or the unresolved asset job from define_asset_job
                            configured: bool,
                            minimum_interval_seconds: int, tick_budget_seconds: float) -> SensorDefinition:
    @sensor(
        name="sftp_inbox_sensor",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING if configured else DefaultSensorStatus.STOPPED,
        description="Lists the SFTP inbox (recursively, resuming across ticks), registers the files that stayed "
        "the same size and mtime for SFTP_STABLE_SECONDS in vault_secure.file_transfer_log, and requests "
        "sftp_transfer_job runs for them.",
    )
    def sftp_inbox_sensor(context: SensorEvaluationContext, sftp_inbox: SftpInboxResource,
                          tracking_db: TrackingDatabaseResource) -> SensorResult | SkipReason:
        if not sftp_inbox.configured:
            return SkipReason(NOT_CONFIGURED)
        store = tracking_db.store()
        config = sftp_inbox.config()
        report, state = scan_inbox(
            sftp_inbox.sensor_pool(), store, inbox_id=config.inbox_id, remote_dir=config.remote_dir,
            processed_dir=sftp_inbox.processed_dir, ignore_patterns=sftp_inbox.patterns,
            settle_seconds=sftp_inbox.stable_seconds, state=ScanState.parse(context.cursor),
            budget_seconds=tick_budget_seconds)
        for problem in report.problems:
            context.log.warning(f"not listed: {problem}")
        for name, why in report.refused:
            context.log.warning(f"refused {name!r}: {why}")
        context.log.info(
            f"listed {report.directories} director{'y' if report.directories == 1 else 'ies'}, {report.files} file(s) "
            f"in {report.seconds:.2f} s (pass {state.passes}{', complete' if report.pass_complete else ''}): "
            f"{report.registered} registered, {report.settling} settling, {report.ignored} ignored")
        waiting = store.claimable_files(config.inbox_id, max_attempts=sftp_inbox.max_attempts,
                                        retry_after_seconds=sftp_inbox.retry_after_seconds)
        if not waiting:
            return SensorResult(skip_reason=f"no file waiting ({report.settling} settling)", cursor=state.dump())
        in_flight = context.instance.get_run_records(
            filters=RunsFilter(job_name=job.name, statuses=[DagsterRunStatus(s) for s in IN_FLIGHT]), limit=1)
        if in_flight:
            return SensorResult(skip_reason=f"{waiting} file(s) waiting for run {in_flight[0].dagster_run.run_id}, "
                                "which is transferring", cursor=state.dump())
        day = partition_key_for(dt.datetime.now(dt.UTC).date())
        return SensorResult(
            run_requests=[RunRequest(partition_key=day, tags={"vault/sftp_files_waiting": str(waiting)})],
            cursor=state.dump())

    return sftp_inbox_sensor
