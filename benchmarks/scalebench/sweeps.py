"""The reconciliation sweep on a large hot bucket: the first sweep (every key new), then steady-state sweeps
with 1, 4 and 8 listers (every key known), each into the same tracking database, each timed.

Each sweep is `vault_pipeline.intake.sweep.run_sweep`, what the hot_bucket_sweep asset calls, with the hot
site's real client. A steady-state sweep splits at the previous sweep's samples; listing and
registration are both inside the time. The CPU seconds of this process (the listers' client side), of
the hot SeaweedFS and of PostgreSQL are read around each sweep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psutil

from vault_pipeline.intake.sweep import run_sweep
from vault_pipeline.replication.tracking import TrackingStore


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU of a process and its children (a server's workers)."""
    if pid is None:
        return 0.0
    try:
        process = psutil.Process(pid)
        total = sum(process.cpu_times()[:2])
        for child in process.children(recursive=True):
            try:
                total += sum(child.cpu_times()[:2])
            except psutil.Error:
                continue
        return total
    except psutil.Error:
        return 0.0


def one_sweep(client: Any, bucket: str, store: TrackingStore, *, destination: str, listers: int,
              servers: dict[str, int | None]) -> dict[str, Any]:
    before = {name: cpu_seconds(pid) for name, pid in servers.items()}
    own = time.process_time()
    report = run_sweep(client, bucket, store, destination_bucket=destination, listers=listers)
    cpu = {name: round(cpu_seconds(pid) - before[name], 1) for name, pid in servers.items()}
    cpu["bench_process"] = round(time.process_time() - own, 1)
    sizes = sorted(r.objects for r in report.ranges)
    return {
        "listers": listers, "ranges": len(report.ranges), "split_source": report.split_source,
        "objects_listed": report.objects_listed, "pages": report.pages, "new": report.new,
        "changed": report.changed, "seconds": round(report.duration_s, 1),
        "keys_per_s": round(report.keys_per_second), "finished": report.finished,
        "range_objects_min_median_max": [sizes[0], sizes[len(sizes) // 2], sizes[-1]] if sizes else [],
        "cpu_s": cpu,
    }


def bench_sweeps(client: Any, bucket: str, store: TrackingStore, *, destination: str, lister_counts: list[int],
                 expected_objects: int, servers: dict[str, int | None],
                 log: Callable[[str], None]) -> dict[str, Any]:
    log(f"sweep: first sweep of {expected_objects:,} objects into an empty manifest")
    first = one_sweep(client, bucket, store, destination=destination, listers=max(lister_counts), servers=servers)
    log(f"  {first['seconds']}s, {first['keys_per_s']:,} keys/s, {first['ranges']} range(s), {first['new']:,} new")
    steady = []
    for listers in lister_counts:
        log(f"sweep: steady state, {listers} lister(s)")
        result = one_sweep(client, bucket, store, destination=destination, listers=listers, servers=servers)
        log(f"  {result['seconds']}s, {result['keys_per_s']:,} keys/s, {result['ranges']} ranges")
        steady.append(result)
    checks = {
        "first_sweep_registered_every_object": first["new"] == expected_objects,
        "steady_sweeps_listed_every_object": all(s["objects_listed"] == expected_objects for s in steady),
        "steady_sweeps_found_nothing_new": all(s["new"] == s["changed"] == 0 for s in steady),
        "every_sweep_finished": first["finished"] and all(s["finished"] for s in steady),
    }
    return {"first": first, "steady": steady, "checks": checks}
