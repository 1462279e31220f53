"""The reconciliation sweep: the whole hot bucket listed in parallel key ranges, every object registered.

It is the safety net behind the change feeds (a feed that missed something, an overwrite the application
table cannot show) and the only feed an OVH bucket has. One sweep is split into key ranges at the key
distribution of the previous sweep (or, the first time, of a sample of the tracking database); each range
is listed with ListObjectsV2 StartAfter by one of `listers` threads, and each page is registered and
recorded in PostgreSQL (vault_secure.sweep_ranges) before the next is requested. A sweep stopped at any
point resumes where each range stopped; a page listed twice is registered once (idempotent by key + ETag).
More ranges than listers (RANGES_PER_LISTER) let a lister that finished early take another range, so one
dense range does not hold the sweep back.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from vault_pipeline.replication.inventory import list_page
from vault_pipeline.replication.tracking import SweepRange, SweepRecord, TrackingStore

RANGES_PER_LISTER = 4


class SweepBusy(RuntimeError):
    """Another process sweeps the same bucket now."""


@dataclass
class SweepReport:
    sweep_id: int
    resumed: bool  # an interrupted sweep was continued
    finished: bool
    listers: int
    split_source: str
    ranges: list[SweepRange] = field(default_factory=list)  # as recorded at the end
    objects_listed: int = 0  # by this run (a resumed sweep's earlier pages are not counted again)
    pages: int = 0
    new: int = 0
    changed: int = 0
    folder_markers: int = 0
    days: dict[dt.date, int] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def keys_per_second(self) -> float:
        return self.objects_listed / self.duration_s if self.duration_s > 0 else 0.0


def plan_sweep(store: TrackingStore, bucket: str, *, listers: int, run_id: str | None) -> tuple[SweepRecord, bool]:
    """The bucket's unfinished sweep (resumed), or a new one split for `listers` listers."""
    current = store.open_sweep(bucket)
    if current is not None:
        return current, True
    wanted = max(0, listers * RANGES_PER_LISTER - 1) if listers > 1 else 0
    previous = store.last_finished_sweep(bucket)
    points: list[str] = []
    source = "none"
    if wanted and previous is not None:
        points, source = store.split_points_from_samples(previous.id, wanted), "previous-sweep"
    if wanted and not points:
        points, source = store.split_points_from_manifest(bucket, wanted), "tracking-db"
    if not points:
        source = "none"
    return store.create_sweep(bucket, listers=listers, split_points=points, split_source=source, run_id=run_id), False


def sweep_range(client: Any, bucket: str, store: TrackingStore, key_range: SweepRange, *, destination_bucket: str,
                page_size: int, report: SweepReport, lock: threading.Lock,
                should_stop: Callable[[], bool]) -> None:
    """List one range from where it stopped to its end, registering and recording each page."""
    after = key_range.resume_after
    first = True
    while first or not should_stop():  # at least one page: every run advances the sweep
        first = False
        started = time.monotonic()
        page = list_page(client, bucket, start_after=after, end_key=key_range.end_key, page_size=page_size)
        result = store.register(page.objects, source_bucket=bucket, destination_bucket=destination_bucket)
        store.advance_range(key_range.sweep_id, key_range.range_no, last_key=page.last_key,
                            objects=page.keys_listed, new=result.new, changed=result.changed,
                            seconds=time.monotonic() - started, sample=page.last_key, done=page.complete)
        with lock:
            report.pages += 1
            report.objects_listed += page.keys_listed
            report.new += result.new
            report.changed += result.changed
            report.folder_markers += page.folder_markers
            for day, n in result.days.items():
                report.days[day] = report.days.get(day, 0) + n
        if page.complete:
            return
        after = page.last_key


def run_sweep(client: Any, bucket: str, store: TrackingStore, *, destination_bucket: str, listers: int = 8,
              page_size: int = 1000, run_id: str | None = None, deadline: float | None = None,
              on_range: Callable[[SweepReport], None] | None = None) -> SweepReport:
    """Sweep the bucket (or finish its interrupted sweep). `deadline` (time.monotonic()) stops listing after
    the pages in flight: the sweep stays open and the next call resumes it. Raises SweepBusy when another
    process sweeps the bucket."""
    started = time.monotonic()
    with store.sweep_lock(bucket) as locked:
        if not locked:
            raise SweepBusy(f"another process is sweeping bucket {bucket!r}; this run leaves it alone")
        sweep, resumed = plan_sweep(store, bucket, listers=listers, run_id=run_id)
        report = SweepReport(sweep_id=sweep.id, resumed=resumed, finished=False, listers=listers,
                             split_source=sweep.split_source)
        todo: queue.SimpleQueue[SweepRange] = queue.SimpleQueue()
        for key_range in store.sweep_ranges(sweep.id):
            if not key_range.done:
                todo.put(key_range)
        lock = threading.Lock()
        failure: list[BaseException] = []

        def should_stop() -> bool:
            return bool(failure) or (deadline is not None and time.monotonic() > deadline)

        def lister() -> None:
            taken = 0
            while not failure and (taken == 0 or not should_stop()):  # each lister advances one range at least
                taken += 1
                try:
                    key_range = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    sweep_range(client, bucket, store, key_range, destination_bucket=destination_bucket,
                                page_size=page_size, report=report, lock=lock, should_stop=should_stop)
                except BaseException as exc:  # the others stop after their page; the sweep stays resumable
                    failure.append(exc)
                    return
                if on_range is not None:  # after each range (the asset logs progress)
                    on_range(report)

        with ThreadPoolExecutor(max_workers=listers, thread_name_prefix="sweep-lister") as pool:
            for future in [pool.submit(lister) for _ in range(listers)]:
                future.result()
        if failure:
            raise failure[0]
        ranges = store.sweep_ranges(sweep.id)
        if all(r.done for r in ranges):
            store.finish_sweep(sweep.id, bucket)
            report.finished = True
        report.ranges = ranges
    report.duration_s = time.monotonic() - started
    return report
