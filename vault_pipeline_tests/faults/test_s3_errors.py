"""S3 500 InternalError and 503 SlowDown bursts on both sites (issue 12, item 6)."""

from __future__ import annotations

import pytest

from vault_pipeline_tests.faults import invariants
from vault_pipeline_tests.faults.conftest import Faulty, MiB
from vault_pipeline_tests.faults.proxy import Rule


def test_slowdown_bursts_on_the_cold_site_end_with_every_object_copied_once(faulty: Faulty) -> None:
    faulty.scenario(cold=[Rule("slowdown", methods={"PUT", "POST"}, probability=0.5, count=40)])


def test_internal_errors_on_the_hot_site_reads_end_with_every_object_copied_once(faulty: Faulty) -> None:
    faulty.scenario(hot=[Rule("error500", methods={"GET", "HEAD"}, probability=0.5, count=40)])


@pytest.mark.slow  # ~50 s: every request of 3 attempts x 4 objects backs off
@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_cold_site_that_keeps_answering_slowdown_fails_the_rows_clearly_then_recovers(faulty: Faulty) -> None:
    """Every write refused for a whole run: each row ends `failed` with the server's answer in its message
    (checked by faulted_run), and the next run, faults off, copies them all."""
    faulty.put_mix(small=3, large=(6 * MiB,))
    faulty.vault.run_sensor()
    after = faulty.faulted_run(cold=[Rule("slowdown", methods={"PUT", "POST"})])
    assert after.statuses == {"failed": 4}
    assert all("SlowDown" in message for message in after.failed.values()), after.failed
    assert invariants.failure_audits(faulty.vault.dsn, faulty.vault.hot_bucket) >= 4
    faulty.recover_and_check()


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_hot_listings_faulted_during_the_sweep(faulty: Faulty) -> None:
    """The reconciliation sweep's ListObjectsV2 pages meet 503s and cut answers: a sweep may fail, never lose
    a key; the next one resumes, finds everything and the run copies it."""
    faulty.put_mix(small=8, large=(6 * MiB,))
    faulty.hot.add(Rule("slowdown", methods={"GET"}, path=r"list-type=2", count=2),
                   Rule("truncate", methods={"GET"}, path=r"list-type=2", count=6))
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(faulty.vault.sweep().objects_listed)
        except Exception as exc:  # a failed sweep run stays open; the next one resumes it
            outcomes.append(f"{type(exc).__name__}: {str(exc)[:120]}")
    faulty.hot.clear()
    faulty.vault.run_sensor()
    print(f"sweeps under faults: {outcomes}; injected {dict(faulty.hot.counts())}")
    assert sum(faulty.hot.counts().values()) > 0
    faulty.recover_and_check()
