"""Runs one partition of replication_job in this process, configured from the environment only.

Used by tests that must kill or measure a real replication process:
    python -m vault_pipeline_tests.run_partition_worker PARTITION_KEY
Prints one JSON line: success, the resident memory before the run and the highest resident memory
sampled during it (MiB). Sampling the current RSS (not ru_maxrss, a lifetime peak that imports already
push up) measures what the copy itself holds.
"""

from __future__ import annotations

import json
import sys
import threading

import psutil
from dagster import DagsterInstance


def main() -> int:
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
            partition_key=partition, instance=instance, raise_on_error=False,
            run_config={"ops": {"hot_inventory": {"config": {"rescan_hot_bucket": False}}}},
        )
    done.set()
    sampler.join()
    print(json.dumps({"success": result.success, "rss_before_mib": rss_before, "rss_after_mib": peak[0]}))
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
