"""What Dagster's run storage says about a job's runs, for the schedules and sensors that must not ask for
a run while another is still on the work."""

from __future__ import annotations

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

IN_FLIGHT = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
             DagsterRunStatus.STARTED]


def run_in_flight(instance: DagsterInstance, job_name: str) -> str | None:
    """The id of a run of `job_name` that is queued or running, if any."""
    records = instance.get_run_records(filters=RunsFilter(job_name=job_name, statuses=IN_FLIGHT), limit=1)
    return records[0].dagster_run.run_id if records else None
