"""Runs one partition of replication_job in this process, configured from the environment only.

Used by tests that must kill or measure a real replication process:
    python -m vault_pipeline_tests.run_partition_worker PARTITION_KEY
Prints one JSON line: success, the resident memory before the run and the highest resident memory
sampled during it (MiB). Sampling the current RSS (not ru_maxrss, a lifetime peak that imports already
push up) measures what the copy itself holds.

VAULT_TEST_KILL_AT makes the process die abruptly (os._exit, no clean-up, like SIGKILL) at one instant of
the copy / journal sequence, so tests can check that the next run repairs exactly that state:
  before_mark_replicated  the first cold copy is written and verified, the database does not know it
  before_flush            rows and their journal entries are committed, no entry has a seq yet
  after_sequence          entries have their seqs (committed), their segment is not written
  after_segment_put       the segment is on the cold site, the database does not know it was written
VAULT_TEST_COPY_DELAY_S slows every object copy by that many seconds, like a slow link to the cold site,
so that a test can make one run still be copying when others start.
"""

from __future__ import annotations

import json
import os
import sys
import threading

import psutil
from dagster import DagsterInstance


def _die(*_: object, **__: object) -> None:
    sys.stdout.flush()
    os._exit(137)


def install_kill_point(point: str) -> None:
    from vault_pipeline.journal import outbox
    from vault_pipeline.journal.segments import SegmentStore
    from vault_pipeline.journal.writer import JournalWriter
    from vault_pipeline.replication.tracking import TrackingStore

    targets = {
        "before_mark_replicated": (TrackingStore, "mark_replicated_many"),
        "before_flush": (JournalWriter, "flush"),
        "after_sequence": (SegmentStore, "put_segment"),
        "after_segment_put": (outbox, "mark_written"),
    }
    if point not in targets:
        raise SystemExit(f"unknown VAULT_TEST_KILL_AT={point!r}; one of {sorted(targets)}")
    owner, name = targets[point]
    setattr(owner, name, _die)


def install_copy_delay(seconds: float) -> None:
    import time

    from vault_pipeline.replication.copier import ObjectCopier

    replicate = ObjectCopier.replicate

    def slow_replicate(self: ObjectCopier, *args: object, **kwargs: object) -> object:
        time.sleep(seconds)
        return replicate(self, *args, **kwargs)

    ObjectCopier.replicate = slow_replicate  # type: ignore[method-assign]


def main() -> int:
    if os.environ.get("VAULT_TEST_KILL_AT"):
        install_kill_point(os.environ["VAULT_TEST_KILL_AT"])
    if os.environ.get("VAULT_TEST_COPY_DELAY_S"):
        install_copy_delay(float(os.environ["VAULT_TEST_COPY_DELAY_S"]))
    from vault_pipeline.definitions import defs  # loads and validates the configuration from the environment

    partition = sys.argv[1]
    job = defs.resolve_job_def("replication_job")
    process = psutil.Process()
    rss_before = process.memory_info().rss / 2**20
    peak = [rss_before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], process.memory_info().rss / 2**20)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(
            partition_key=partition, instance=instance, raise_on_error=False)
    done.set()
    sampler.join()
    print(json.dumps({"success": result.success, "rss_before_mib": rss_before, "rss_after_mib": peak[0]}))
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
