"""vault-pipeline as a contender: one process that registers the hot bucket and materializes its partition.

    python benchmarks/copybench/vault_worker.py EVENTS_FILE

Configured from the environment only, like a Dagster run worker (README, "Configuration"). It does what
the daemon does: runs the reconciliation sweep of the hot bucket (the registration) and one tick of
hot_bucket_sensor, then executes every run the sensor requested: `replication_job` for the partition, in
this process (hot_inventory, cold_copies with verification, locks, tags, SHA-256 and the write journal,
the cold_copies checks, hot_deletions). It writes phase events to EVENTS_FILE (see events.py) with the
per-step durations and the cold_copies metadata of each run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from copybench.events import EventLog


def sweep_hot_bucket(defs: Any, resources: dict[str, Any], instance: Any) -> tuple[list[Any], int]:
    """The reconciliation sweep (reconciliation_sweep_job, what its hourly schedule runs) registers the hot
    bucket; then one sensor tick asks for the runs. The run requests, and 1 (the sensor ticks)."""
    from dagster import SensorResult, build_sensor_context

    sweep = defs.resolve_job_def("reconciliation_sweep_job").execute_in_process(instance=instance)
    if not sweep.success:
        raise RuntimeError("the reconciliation sweep failed")
    sensor = defs.resolve_sensor_def("hot_bucket_sensor")
    result = sensor(build_sensor_context(instance=instance, cursor=None, resources=resources))
    assert isinstance(result, SensorResult), result
    return list(result.run_requests or []), 1


def plain_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The numeric and boolean values of a materialization's metadata."""
    values = {}
    for name, entry in metadata.items():
        value = getattr(entry, "value", entry)
        if isinstance(value, int | float | bool):
            values[name] = value
    return values


def run_summary(result: Any, instance: Any) -> dict[str, Any]:
    steps = {
        stat.step_key: round(stat.end_time - stat.start_time, 3)
        for stat in instance.get_run_step_stats(result.run_id)
        if stat.start_time is not None and stat.end_time is not None
    }
    materializations = result.asset_materializations_for_node("cold_copies")
    cold_copies = plain_metadata(materializations[-1].metadata) if materializations else {}
    return {"run_id": result.run_id, "success": result.success, "steps_s": steps, "cold_copies": cold_copies}


def main() -> int:
    events = EventLog(Path(sys.argv[1]))
    from dagster import DagsterInstance

    from vault_pipeline.definitions import build_definitions, build_resources
    from vault_pipeline.settings import load_settings

    settings, _ = load_settings()
    resources = build_resources(settings)
    defs = build_definitions(settings)
    job = defs.resolve_job_def("replication_job")
    with DagsterInstance.ephemeral() as instance:
        events.emit("register_start")
        requests, ticks = sweep_hot_bucket(defs, resources, instance)
        events.emit("register_end", sensor_ticks=ticks, partitions=[r.partition_key for r in requests])
        events.emit("copy_start")
        runs = []
        for request in requests:
            result = job.execute_in_process(partition_key=request.partition_key, run_config=request.run_config,
                                            tags=request.tags, instance=instance, raise_on_error=False)
            runs.append(result)
        events.emit("copy_end", success=all(r.success for r in runs) and bool(runs),
                    runs=[run_summary(r, instance) for r in runs])
    return 0 if runs and all(r.success for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
