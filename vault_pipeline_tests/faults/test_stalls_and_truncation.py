"""Responses stalled past the client's read timeout and bodies cut short of their Content-Length, on both
sites (issue 12, item 6). The suite's clients time out after READ_TIMEOUT_S (conftest.py)."""

from __future__ import annotations

import pytest

from vault_pipeline_tests.faults.conftest import STALL_S, Faulty
from vault_pipeline_tests.faults.proxy import Rule


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_hot_reads_stalled_past_the_read_timeout(faulty: Faulty) -> None:
    faulty.scenario(hot=[Rule("stall", methods={"GET"}, path=r"/docs/", count=3, stall_seconds=STALL_S)], small=6)


def test_cold_writes_stalled_past_the_read_timeout_after_the_server_stored_them(faulty: Faulty) -> None:
    """The server applies the PUT; the client gives up waiting and tries again: one version per key."""
    faulty.scenario(cold=[Rule("stall", methods={"PUT"}, path=r"/docs/", count=3, stall_seconds=STALL_S)], small=6)


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_hot_bodies_truncated(faulty: Faulty) -> None:
    faulty.scenario(hot=[Rule("truncate", methods={"GET"}, path=r"/docs/", probability=0.5, count=10)])


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_cold_answers_truncated(faulty: Faulty) -> None:
    """Cut XML answers of the cold site (multipart create/complete, listings, journal reads)."""
    faulty.scenario(cold=[Rule("truncate", methods={"POST", "GET"}, probability=0.3, count=8)])
