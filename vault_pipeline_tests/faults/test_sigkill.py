"""Replication processes SIGKILLed at random instants, several times over the same backlog (issue 12, item 6).

assets/test_crash_and_scale.py kills one process at a chosen instant (a multipart upload open); this kills
three in a row at seeded random instants (the seed is printed, so a failure can be replayed with
VAULT_FAULTS_SEED), then lets a fourth run finish, and ends on the suite's invariants.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from vault_pipeline_tests.faults.conftest import Faulty

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)]


def test_workers_killed_at_random_instants(faulty: Faulty) -> None:
    seed = int(os.environ.get("VAULT_FAULTS_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"VAULT_FAULTS_SEED={seed}")
    vault = faulty.vault
    faulty.put_mix(small=30)
    vault.run_sensor()
    direct = {"OVH_S3_ENDPOINT": faulty.hot.upstream, "AWS_S3_ENDPOINT": faulty.cold.upstream}
    for attempt in range(3):
        worker = vault.start_worker(REPLICATION_CONCURRENCY="4", VAULT_TEST_COPY_DELAY_S="0.2", **direct)
        delay = rng.uniform(2.5, 6.0)  # the process needs ~2.5 s to import Dagster and start its run
        time.sleep(delay)
        alive = worker.poll() is None
        if alive:
            os.kill(worker.pid, signal.SIGKILL)
        worker.communicate()
        print(f"worker {attempt}: {'killed' if alive else 'finished'} after {delay:.2f} s")
        time.sleep(5.5 if alive else 0)  # VAULT_LEASE_SECONDS=5: the dead worker's leases expire
    faulty.recover_and_check()
