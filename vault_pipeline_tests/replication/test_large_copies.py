"""Large objects: parts streamed from a local spool file (the hot site read once) or, without one, from
ranged GETs pinned to the hashed version; the cold site checks every part against its pass-1 SHA-256."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest

from vault_pipeline.replication.copier import CopyOptions, ObjectCopier
from vault_pipeline.replication.crt_s3 import CrtS3Client
from vault_pipeline.replication.errors import CopyError
from vault_pipeline.replication.policy import RetentionPolicy
from vault_pipeline.replication.s3client import SiteConfig, make_client
from vault_pipeline.replication.spool import SPOOL_BUDGET, SpoolFile
from vault_pipeline.replication.verify import META_SHA256
from vault_pipeline_tests.conftest import Vault

MiB = 1024 * 1024
SIZE = 21 * MiB + 12345  # three 8 MiB parts, the last one short
pytestmark = pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)


def clients(vault: Vault, *, fast: bool) -> tuple[Any, Any]:
    def site(name: str, prefix: str, bucket: str) -> Any:
        return make_client(SiteConfig(name, vault.env[f"{prefix}_ENDPOINT"], "us-east-1",
                                      vault.env[f"{prefix}_ACCESS_KEY_ID"], vault.env[f"{prefix}_SECRET_ACCESS_KEY"],
                                      bucket, fast_path=fast))
    return site("hot", "OVH_S3", vault.hot_bucket), site("cold", "AWS_S3", vault.cold_bucket)


def copier(vault: Vault, *, fast: bool = True, spool: bool = True, tmp_path: Any = None) -> ObjectCopier:
    hot, cold = clients(vault, fast=fast)
    return ObjectCopier(hot=hot, hot_bucket=vault.hot_bucket, cold=cold, cold_bucket=vault.cold_bucket,
                        policy=RetentionPolicy.default(), options=CopyOptions(
                            multipart_threshold=16 * MiB, part_size=8 * MiB, part_concurrency=2,
                            spool_max_bytes=(64 * MiB if spool else 0),
                            spool_dir=str(tmp_path) if tmp_path else None))


@pytest.fixture
def big(vault: Vault) -> tuple[str, bytes]:
    body = os.urandom(SIZE)
    vault.put("big.bin", body, {"document-type": "contract"})
    return "big.bin", body


@pytest.mark.parametrize(("fast", "spool"), [(True, True), (True, False), (False, True), (False, False)],
                         ids=["streamed-from-spool", "streamed-from-ranged-gets", "boto3-spool", "boto3-ranged"])
def test_every_way_of_sending_parts_gives_the_same_verified_copy(vault: Vault, big: tuple[str, bytes], fast: bool,
                                                                 spool: bool, tmp_path: Any) -> None:
    key, body = big
    copy = copier(vault, fast=fast, spool=spool, tmp_path=tmp_path)
    assert isinstance(copy.cold, CrtS3Client) == fast
    outcome = copy.replicate(key, listed_size=SIZE)
    assert outcome.cold_checksum.endswith("-3") and outcome.part_size == 8 * MiB
    assert outcome.sha256 == hashlib.sha256(body).hexdigest()
    head = vault.cold.head_object(Bucket=vault.cold_bucket, Key=key, VersionId=outcome.cold_version_id)
    assert head["ContentLength"] == SIZE and head["Metadata"][META_SHA256] == outcome.sha256
    assert vault.cold.get_object(Bucket=vault.cold_bucket, Key=key, VersionId=outcome.cold_version_id)[
        "Body"].read() == body
    assert len(vault.cold_versions(key)) == 1 and vault.open_uploads() == []
    assert os.listdir(tmp_path) == []  # the spool file is unlinked from the start


def test_a_spool_that_cannot_be_written_falls_back_to_ranged_gets(vault: Vault, big: tuple[str, bytes],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    key, _ = big
    writes = []

    def disk_full(self: SpoolFile, data: bytes) -> None:
        writes.append(len(data))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SpoolFile, "write", disk_full)
    ranged = []
    real_range = ObjectCopier._range_chunks
    monkeypatch.setattr(ObjectCopier, "_range_chunks",
                        lambda self, *args: ranged.append(args[1:]) or real_range(self, *args))
    outcome = copier(vault).replicate(key, listed_size=SIZE)
    assert len(writes) == 1 and len(ranged) == 3  # one failed write, then every part read again
    assert outcome.cold_checksum.endswith("-3") and vault.open_uploads() == []


def test_the_cold_site_refuses_a_part_whose_bytes_differ_and_the_upload_is_aborted(
        vault: Vault, big: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    key, _ = big
    real_chunks = SpoolFile.chunks

    def corrupted(self: SpoolFile, start: int, length: int) -> Any:
        for i, chunk in enumerate(real_chunks(self, start, length)):
            yield (bytes([chunk[0] ^ 1]) + chunk[1:]) if start == 8 * MiB and i == 0 else chunk

    monkeypatch.setattr(SpoolFile, "chunks", corrupted)
    with pytest.raises(CopyError, match="UploadPart 2"):
        copier(vault).replicate(key, listed_size=SIZE)
    assert vault.open_uploads() == [] and vault.cold_versions(key) == []


def test_a_source_replaced_between_the_passes_is_refused_by_the_pinned_ranged_get(
        vault: Vault, big: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    key, _ = big
    real_upload = ObjectCopier._upload_parts

    def replace_source_first(self: ObjectCopier, *args: Any) -> Any:
        vault.put(key, os.urandom(SIZE), {"document-type": "contract"})
        return real_upload(self, *args)

    monkeypatch.setattr(ObjectCopier, "_upload_parts", replace_source_first)
    with pytest.raises(CopyError, match="ranged GET"):
        copier(vault, spool=False).replicate(key, listed_size=SIZE)
    assert vault.open_uploads() == [] and vault.cold_versions(key) == []


def test_the_spool_budget_is_shared_and_given_back(vault: Vault, big: tuple[str, bytes]) -> None:
    key, _ = big
    assert SPOOL_BUDGET.reserve(60 * MiB, 64 * MiB)  # another copy holds most of it
    try:
        spooled = copier(vault)._open_spool(copier(vault)._head_source(key))
        assert spooled is None  # does not fit: ranged GETs
    finally:
        SPOOL_BUDGET.release(60 * MiB)
    copier(vault).replicate(key, listed_size=SIZE)
    assert SPOOL_BUDGET.reserve(64 * MiB, 64 * MiB)  # everything was given back
    SPOOL_BUDGET.release(64 * MiB)
