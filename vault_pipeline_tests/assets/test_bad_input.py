"""Odd keys, odd sizes and odd metadata are replicated correctly or refused with a recorded error."""

from __future__ import annotations

import hashlib

import pytest

from vault_pipeline_tests.conftest import Vault

# 1024-byte keys (the S3 maximum) in segments of at most 255 bytes: SeaweedFS refuses a longer segment
# (S3 allows a single 1024-byte one), so the hot site of this test cannot hold a one-segment 1024-byte key.
LONG_KEY = "/".join(c * 204 for c in "klmno")
UNICODE_LONG_KEY = ("é" * 120 + "/") * 4 + "文" * 20  # two- and three-byte characters
assert len(LONG_KEY.encode()) == len(UNICODE_LONG_KEY.encode()) == 1024

CASES = {
    "with spaces/a b c.pdf": ({"document-type": "payslip"}, "payslip", 50),
    "unicode/Déclaration 文档 ü.pdf": ({"document-type": "invoice"}, "invoice", 10),
    "percent/100% sûr %2F.pdf": ({"document-type": "contract"}, "contract", 10),
    "plus/a+b=c&d.pdf": ({"document-type": "payslip"}, "payslip", 50),
    LONG_KEY: ({"document-type": "invoice"}, "invoice", 10),
    UNICODE_LONG_KEY: ({"document-type": "payslip"}, "payslip", 50),
    "empty/zero-bytes.pdf": ({"document-type": "payslip"}, "payslip", 50),
    "meta/missing-type.pdf": ({}, "general", 50),
    "meta/upper-type.pdf": ({"document-type": "PAYSLIP"}, "payslip", 50),
    "meta/unknown-type.pdf": ({"document-type": "bank-statement"}, "general", 50),
    "meta/tag-hostile.pdf": ({"document-type": "pay<slip>&x=1#%"}, "general", 50),
    "meta/bad-date.pdf": ({"document-type": "invoice", "document-date": "31/12/2020"}, "invoice", 10),
    "meta/other-hostile-values.pdf": ({"document-type": "contract", "comment": "a&b=c<d>{}[]|\\^"}, "contract", 10),
}


@pytest.fixture
def loaded(vault: Vault) -> Vault:
    for key, (metadata, _, _) in CASES.items():
        body = b"" if key.startswith("empty/") else hashlib.sha256(key.encode()).digest() * 40
        vault.put(key, body, metadata)
    return vault


def test_odd_keys_and_metadata_are_all_replicated(loaded: Vault) -> None:
    vault = loaded
    runs = vault.sensor_and_runs()
    assert runs and all(r.success for r in runs)
    rows = {r["s3_key"]: r for r in vault.store.rows(vault.hot_bucket)}
    assert set(rows) == set(CASES)
    for key, (metadata, document_type, years) in CASES.items():
        row = rows[key]
        assert row["status"] == "replicated", (key, row["error_message"])
        assert (row["document_type"], row["retention_years"]) == (document_type, years), key
        head = vault.cold.head_object(Bucket=vault.cold_bucket, Key=key, VersionId=row["aws_version_id"])
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ContentLength"] == row["ovh_size"]
        assert head["Metadata"]["vault-sha256"] == row["sha256"]
        for name, value in metadata.items():  # source metadata travels unchanged
            assert head["Metadata"][name] == value, (key, name)
    assert rows["empty/zero-bytes.pdf"]["ovh_size"] == 0
    assert rows["empty/zero-bytes.pdf"]["sha256"] == hashlib.sha256(b"").hexdigest()
    assert rows["meta/bad-date.pdf"]["retention_base"] == "last-modified"
    assert rows["meta/tag-hostile.pdf"]["source_document_type"] == "pay<slip>&x=1#%"
    if vault.flavour == "seaweedfs":
        tags = vault.cold.get_object_tagging(Bucket=vault.cold_bucket, Key="meta/tag-hostile.pdf")["TagSet"]
        assert {t["Key"]: t["Value"] for t in tags} == {"DocumentType": "general", "RetentionYears": "50"}


def test_folder_markers_are_not_documents(vault: Vault) -> None:
    vault.put("folder/", b"")
    vault.put("folder/real.pdf", b"content")
    runs = vault.sensor_and_runs()
    assert all(r.success for r in runs)
    assert [r["s3_key"] for r in vault.store.rows(vault.hot_bucket)] == ["folder/real.pdf"]
