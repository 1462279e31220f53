"""S3 500 InternalError and 503 SlowDown bursts on both sites (issue 12, item 6)."""

from __future__ import annotations

from vault_pipeline_tests.faults.conftest import Faulty
from vault_pipeline_tests.faults.proxy import Rule


def test_slowdown_bursts_on_the_cold_site_end_with_every_object_copied_once(faulty: Faulty) -> None:
    faulty.scenario(cold=[Rule("slowdown", methods={"PUT", "POST"}, probability=0.5, count=40)])


def test_internal_errors_on_the_hot_site_reads_end_with_every_object_copied_once(faulty: Faulty) -> None:
    faulty.scenario(hot=[Rule("error500", methods={"GET", "HEAD"}, probability=0.5, count=40)])


def test_a_cold_site_that_keeps_answering_slowdown_fails_the_rows_clearly_then_recovers(faulty: Faulty) -> None:
    found = faulty.scenario(cold=[Rule("slowdown", methods={"PUT", "POST"})])
    assert found.ok
