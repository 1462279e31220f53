"""The real hot_bucket_sensor, evaluated tick after tick on a large hot bucket, each tick timed.

The sensor comes from `build_definitions` with the default settings (tick budget, page size), its
resources from `build_resources`, exactly as `dagster dev` loads them; each tick is one call of the
sensor with `build_sensor_context` (real resources, the cursor of the previous tick), back to back (the
daemon would wait VAULT_SENSOR_INTERVAL_SECONDS between ticks; waiting would change nothing measured).
Inside each tick, the time spent listing (ListObjectsV2) and registering (TrackingStore.register) is
measured by wrapping the two functions the sensor calls; the rest (resources, run requests, backlog
count) is the tick's duration minus both.
"""

import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from dagster import DagsterInstance, RunRequest, SensorDefinition, SensorResult, build_sensor_context

import vault_pipeline.sensors.hot_bucket as hot_bucket_module
from vault_pipeline.replication.tracking import RegisterResult, TrackingStore

MAX_TICKS = 10_000


@dataclass
class TickProbe:
    """What the wrapped listing and registration saw during one tick."""

    pages: int = 0
    objects: int = 0
    list_s: float = 0.0
    register_s: float = 0.0
    new: int = 0
    changed: int = 0
    register_pages_s: list[float] = field(default_factory=list)


@contextmanager
def probed() -> Iterator[Callable[[], TickProbe]]:
    """Wrap the sensor's list_page and TrackingStore.register with timers for the duration of the block;
    yields a function that returns the probe of the tick so far and starts a new one."""
    probe = TickProbe()
    original_list = hot_bucket_module.list_page
    original_register = TrackingStore.register

    def list_page(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        page = original_list(*args, **kwargs)
        probe.list_s += time.perf_counter() - started
        probe.pages += 1
        probe.objects += len(page.objects)
        return page

    def register(self: TrackingStore, *args: Any, **kwargs: Any) -> RegisterResult:
        started = time.perf_counter()
        result = original_register(self, *args, **kwargs)
        elapsed = time.perf_counter() - started
        probe.register_s += elapsed
        probe.register_pages_s.append(elapsed)
        probe.new += result.new
        probe.changed += result.changed
        return result

    def take() -> TickProbe:
        nonlocal probe
        done, probe = probe, TickProbe()
        return done

    hot_bucket_module.list_page = list_page  # type: ignore[assignment]
    TrackingStore.register = register  # type: ignore[method-assign]
    try:
        yield take
    finally:
        hot_bucket_module.list_page = original_list
        TrackingStore.register = original_register  # type: ignore[method-assign]


def row_count(dsn: str, bucket: str) -> int:
    with psycopg.connect(dsn) as conn:
        return int(conn.execute("SELECT count(*) FROM vault_secure.replication_status WHERE bucket_source = %s",
                                (bucket,)).fetchone()[0])


def requested_days(run_requests: list[RunRequest]) -> dict[str, int]:
    """Partition -> pending objects the sensor announced in the run's tags."""
    return {str(r.partition_key): int(r.tags.get("vault/pending_objects", "0")) for r in run_requests}


@dataclass
class Sweep:
    ticks: list[dict[str, Any]]
    cursor: str | None
    run_requests: list[RunRequest]
    register_pages_s: list[float]

    def summary(self) -> dict[str, Any]:
        durations = [t["duration_s"] for t in self.ticks]
        listed = sum(t["objects_listed"] for t in self.ticks)
        total = sum(durations)
        pages = self.register_pages_s
        return {
            "ticks": len(self.ticks), "total_s": round(total, 3), "max_tick_s": round(max(durations), 3),
            "mean_tick_s": round(statistics.fmean(durations), 3), "objects_listed": listed,
            "objects_per_s": round(listed / total) if total else None,
            "pages": sum(t["pages"] for t in self.ticks),
            "list_s": round(sum(t["list_s"] for t in self.ticks), 3),
            "register_s": round(sum(t["register_s"] for t in self.ticks), 3),
            "other_s": round(sum(t["other_s"] for t in self.ticks), 3),
            "register_page_ms_p50": round(statistics.median(pages) * 1000, 2) if pages else None,
            "register_page_ms_max": round(max(pages) * 1000, 2) if pages else None,
            "new": sum(t["new"] for t in self.ticks), "changed": sum(t["changed"] for t in self.ticks),
            "run_requests_last_tick": requested_days(self.run_requests),
            "tick_durations_s": [round(d, 3) for d in durations],
        }


def sweep(sensor: SensorDefinition, instance: DagsterInstance, resources: dict[str, Any], cursor: str | None, *,
          dsn: str, bucket: str, take: Callable[[], TickProbe], log: Callable[[str], None]) -> Sweep:
    """Evaluate the sensor until a tick completes the sweep (its cursor has no continuation token)."""
    ticks: list[dict[str, Any]] = []
    register_pages: list[float] = []
    for number in range(1, MAX_TICKS + 1):
        rows_before = row_count(dsn, bucket)
        context = build_sensor_context(instance=instance, cursor=cursor, resources=resources)
        take()
        started = time.perf_counter()
        result = sensor(context)
        duration = time.perf_counter() - started
        probe = take()
        assert isinstance(result, SensorResult), result
        cursor = result.cursor
        state = json.loads(cursor or "{}")
        requests = list(result.run_requests or [])
        tick = {
            "tick": number, "duration_s": round(duration, 3), "pages": probe.pages,
            "objects_listed": probe.objects, "list_s": round(probe.list_s, 3),
            "register_s": round(probe.register_s, 3),
            "other_s": round(duration - probe.list_s - probe.register_s, 3),
            "new": probe.new, "changed": probe.changed, "rows_added": row_count(dsn, bucket) - rows_before,
            "run_requests": len(requests), "sweep_complete": state.get("token") is None,
        }
        ticks.append(tick)
        register_pages += probe.register_pages_s
        log(f"  tick {number}: {duration:.1f}s, {probe.pages} pages, {probe.objects:,} listed "
            f"(list {probe.list_s:.1f}s, register {probe.register_s:.1f}s), {probe.new:,} new, "
            f"{probe.changed:,} changed, {len(requests)} run request(s)")
        if state.get("token") is None:
            return Sweep(ticks=ticks, cursor=cursor, run_requests=requests, register_pages_s=register_pages)
    raise RuntimeError(f"the sensor did not complete its sweep in {MAX_TICKS} ticks")
