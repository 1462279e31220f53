"""Runs one shard of a day's replication_job in this process, configured from the environment only, as a
worker machine would:
    python -m vault_pipeline_tests.replication.shard_worker PARTITION_KEY SHARD
SHARD is the run tag vault/shard ("i/n"). Prints one JSON line: success, and the cold_copies metadata that
tells the shard and how many rows came from its own slice and how many it took from the others.
VAULT_TEST_KILL_AT and VAULT_TEST_COPY_DELAY_S act as in vault_pipeline_tests.run_partition_worker.
"""

from __future__ import annotations

import json
import os
import sys

from dagster import DagsterInstance

from vault_pipeline_tests.run_partition_worker import install_copy_delay, install_kill_point


def main() -> int:
    if os.environ.get("VAULT_TEST_KILL_AT"):
        install_kill_point(os.environ["VAULT_TEST_KILL_AT"])
    if os.environ.get("VAULT_TEST_COPY_DELAY_S"):
        install_copy_delay(float(os.environ["VAULT_TEST_COPY_DELAY_S"]))
    from vault_pipeline.definitions import defs  # loads and validates the configuration from the environment

    partition, shard = sys.argv[1], sys.argv[2]
    job = defs.resolve_job_def("replication_job")
    with DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(partition_key=partition, instance=instance, raise_on_error=False,
                                        tags={"vault/shard": shard})
        found = result.asset_materializations_for_node("cold_copies")
        metadata = {k: v.value for k, v in found[0].metadata.items()
                    if k in ("shard", "objects_own_slice", "objects_stolen", "objects_copied", "objects_adopted",
                             "stale_uploads_aborted")
                    } if found else {}
    print(json.dumps({"success": result.success, "metadata": metadata}))
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
