"""Connections reset mid-body, on GET and PUT, on both sites (issue 12, item 6).

A reset of a PUT's *response* is the hard case: the server has stored the version and the client never
hears it. A blind retry would store a second locked version that nobody can delete (Object Lock
COMPLIANCE), so these scenarios check one cold version per key on both cold flavours.
"""

from __future__ import annotations

import pytest

from vault_pipeline_tests.faults.conftest import Faulty
from vault_pipeline_tests.faults.proxy import Rule

UPLOAD_PART = r"partNumber="
COMPLETE = r"\?uploadId=[^&]*$"  # POST /bucket/key?uploadId=...: CompleteMultipartUpload


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_hot_reads_reset_mid_body(faulty: Faulty) -> None:
    faulty.scenario(hot=[Rule("reset_response", methods={"GET"}, path=r"/docs/", probability=0.5, count=12)])


def test_cold_puts_reset_while_the_body_is_sent(faulty: Faulty) -> None:
    faulty.scenario(cold=[Rule("reset_request", methods={"PUT"}, path=r"/docs/", probability=0.4, count=12)])


def test_cold_put_answers_lost_after_the_write(faulty: Faulty) -> None:
    """The object is stored, the response is cut mid-body: still one cold version per key."""
    faulty.scenario(cold=[Rule("reset_response", methods={"PUT"}, path=r"/docs/small", probability=0.5, count=6)])


def test_cold_upload_part_and_complete_answers_lost(faulty: Faulty) -> None:
    faulty.scenario(cold=[Rule("reset_response", methods={"PUT"}, path=UPLOAD_PART, count=1),
                          Rule("reset_response", methods={"POST"}, path=COMPLETE, count=1)],
                    small=4)


@pytest.mark.parametrize("kind", ["reset_response", "truncate"])
def test_cold_create_multipart_answer_lost(faulty: Faulty, kind: str) -> None:
    """The server opened the upload, the client never learnt its id (found by the soak benchmark): no upload
    may stay open behind a replicated row."""
    faulty.scenario(cold=[Rule(kind, methods={"POST"}, path=r"\?uploads", count=2)], small=2)
