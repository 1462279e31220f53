"""The verifying HEAD's evidence survives its trip through the audit log's JSON unchanged."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from vault_pipeline.replication.evidence import evidence_from_record, evidence_record
from vault_pipeline.replication.verify import ColdEvidence

HEAD = {"VersionId": "v1", "ContentLength": 123, "ChecksumSHA256": "abc=-2", "Metadata": {"vault-sha256": "f" * 64},
        "ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": dt.datetime(2076, 3, 1, tzinfo=dt.UTC),
        "StorageClass": "DEEP_ARCHIVE", "TagCount": 2}


@pytest.mark.parametrize("tags", [{"RetentionYears": "50", "DocumentType": "payslip"}, None])
def test_round_trip(tags: dict[str, str] | None) -> None:
    evidence = ColdEvidence.from_head(HEAD, tags)  # None: an adopted copy, whose tags must be read back
    record = json.loads(json.dumps(evidence_record(evidence, "etag-1")))  # as stored in jsonb and read back
    assert evidence_from_record(record) == (evidence, "etag-1")


def test_a_sparse_head_round_trips() -> None:
    evidence = ColdEvidence.from_head({"VersionId": "v2", "ContentLength": 0}, None)  # AWS omits STANDARD, no lock
    assert evidence_from_record(json.loads(json.dumps(evidence_record(evidence, "e")))) == (evidence, "e")
