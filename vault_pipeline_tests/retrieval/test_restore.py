"""`Retriever` (retrieval/restore.py) with a scripted cold client, for what real servers cannot be made to
do on demand: bytes that do not match records that agree, a stream that breaks half-way, a restore that
outlasts the timeout. The restore against the real servers, through the command, is
vault_pipeline_tests/cli/test_restore.py.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError

from vault_pipeline.retrieval.errors import RetrievalRefused, StillRestoring
from vault_pipeline.retrieval.resolve import JournalWitness, Target
from vault_pipeline.retrieval.restore import Outcome, RetrievalOptions, Retriever


class Body:
    def __init__(self, data: bytes, break_after: int | None = None) -> None:
        self.data, self.break_after = data, break_after

    def iter_chunks(self, size: int) -> Iterator[bytes]:
        for start in range(0, len(self.data), size):
            if self.break_after is not None and start >= self.break_after:
                raise ConnectionClosedError(endpoint_url="scripted")
            yield self.data[start:start + size]

    def close(self) -> None:
        pass


class ScriptedCold:
    def __init__(self, data: bytes, *, break_after: int | None = None, restore_header: str | None = None) -> None:
        self.data, self.break_after, self.restore_header = data, break_after, restore_header
        self.gets: list[str | None] = []
        self.restores = 0

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        self.gets.append(kwargs.get("Range"))
        offset = int(kwargs["Range"][6:-1]) if "Range" in kwargs else 0
        broken = self.break_after if len(self.gets) == 1 else None
        return {"Body": Body(self.data[offset:], broken)}

    def head_object(self, **kwargs: Any) -> dict[str, Any]:
        head = {"ContentLength": len(self.data), "StorageClass": "DEEP_ARCHIVE", "Metadata": {}}
        if self.restore_header:
            head["Restore"] = self.restore_header
        return head

    def restore_object(self, **kwargs: Any) -> dict[str, Any]:
        self.restores += 1
        self.restore_header = 'ongoing-request="true"'
        return {"ResponseMetadata": {"HTTPStatusCode": 202}}


def target_for(data: bytes) -> Target:
    sha = hashlib.sha256(data).hexdigest()
    return Target(key="k/doc.pdf", source_bucket="hot", cold_bucket="cold", version_id="v1", current=True,
                  sha256=sha, size=len(data), db_sha256=sha, db_source="test",
                  journal=JournalWitness(seq=1, segment="s", sha256=sha, size=len(data), found_via="index"))


def test_bytes_that_do_not_verify_are_removed(tmp_path: Path) -> None:
    expected = b"the document as recorded" * 1000
    cold = ScriptedCold(b"something else entirely" * 1000)
    retriever = Retriever(cold, "cold", RetrievalOptions(chunk_size=64 * 1024))
    outcome = Outcome(target=target_for(expected))
    with pytest.raises(RetrievalRefused, match="did not verify: SHA-256 of the bytes read"):
        retriever.download(outcome.target, tmp_path / "doc.pdf", outcome)
    assert list(tmp_path.iterdir()) == [] and outcome.verified is False


def test_a_broken_stream_resumes_where_it_stopped(tmp_path: Path) -> None:
    data = os.urandom(5 * 64 * 1024 + 123)
    cold = ScriptedCold(data, break_after=2 * 64 * 1024)
    retriever = Retriever(cold, "cold", RetrievalOptions(chunk_size=64 * 1024))
    outcome = Outcome(target=target_for(data))
    retriever.download(outcome.target, tmp_path / "doc.pdf", outcome)
    assert (tmp_path / "doc.pdf").read_bytes() == data
    assert cold.gets == [None, f"bytes={2 * 64 * 1024}-"] and outcome.resumed_reads == 1


def test_the_timeout_ends_the_wait_and_a_rerun_does_not_request_again() -> None:
    data = b"archived"
    cold = ScriptedCold(data)
    now = [0.0]
    options = RetrievalOptions(poll_seconds=60, timeout_seconds=150)
    retriever = Retriever(cold, "cold", options, clock=lambda: now[0],
                          sleep=lambda s: now.__setitem__(0, now[0] + s))
    outcome = Outcome(target=target_for(data), storage_class="DEEP_ARCHIVE")
    with pytest.raises(StillRestoring, match=r"still in progress after 2m30s \(tier Standard, expected within 12 h\)"):
        retriever.wait_until_readable(outcome.target, cold.head_object(), outcome)
    assert cold.restores == 1 and outcome.checks == 3 and outcome.ongoing_answers == 3  # at 60, 120, 150 s

    again = Outcome(target=target_for(data), storage_class="DEEP_ARCHIVE")
    with pytest.raises(StillRestoring):
        retriever.wait_until_readable(again.target, cold.head_object(), again)
    assert cold.restores == 1 and again.restore == "resumed"
