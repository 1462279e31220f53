"""The first copy of a key is written with If-None-Match instead of a HEAD beforehand; when a version
exists after all it is adopted, and a server without conditional writes is detected and asked the old way."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from vault_pipeline.replication.copier import CopyOptions, ObjectCopier
from vault_pipeline.replication.policy import RetentionPolicy
from vault_pipeline.replication.s3client import SiteConfig, make_client
from vault_pipeline_tests.conftest import Vault


class CountingCold:
    """The real cold client, counting calls; optionally playing a server that lacks conditional writes."""

    def __init__(self, client: Any, *, conditional_supported: bool = True) -> None:
        self._client, self.conditional_supported = client, conditional_supported
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def head_object(self, **kwargs: Any) -> Any:
        self.calls.append("HEAD")
        return self._client.head_object(**kwargs)

    def put_object(self, **kwargs: Any) -> Any:
        self.calls.append("PUT if-none-match" if "IfNoneMatch" in kwargs else "PUT")
        if "IfNoneMatch" in kwargs and not self.conditional_supported:
            raise ClientError({"Error": {"Code": "NotImplemented", "Message": "A header you provided implies "
                               "functionality that is not implemented"},
                               "ResponseMetadata": {"HTTPStatusCode": 501}}, "PutObject")
        return self._client.put_object(**kwargs)


def copier(vault: Vault, cold: CountingCold) -> ObjectCopier:
    return ObjectCopier(hot=vault.hot, hot_bucket=vault.hot_bucket, cold=cold, cold_bucket=vault.cold_bucket,
                        policy=RetentionPolicy.default(), options=CopyOptions(storage_class="DEEP_ARCHIVE"))


@pytest.mark.parametrize("cold_flavour", ["seaweedfs", "moto"], indirect=True)
def test_a_first_copy_costs_one_put_and_one_verifying_head(vault: Vault) -> None:
    vault.put("first.pdf", b"first copy", {"document-type": "invoice"})
    cold = CountingCold(vault.cold)
    outcome = copier(vault, cold).replicate("first.pdf", listed_size=10, first_copy=True)
    assert cold.calls == ["PUT if-none-match", "HEAD"]
    assert not outcome.adopted and len(vault.cold_versions("first.pdf")) == 1


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_copy_written_by_a_dead_run_is_refused_then_adopted(vault: Vault) -> None:
    vault.put("again.pdf", b"written once", {"document-type": "payslip"})
    first = copier(vault, CountingCold(vault.cold)).replicate("again.pdf", listed_size=12, first_copy=True)
    cold = CountingCold(vault.cold)  # as if the run died before recording it: the manifest knows no version
    second = copier(vault, cold).replicate("again.pdf", listed_size=12, first_copy=True)
    assert cold.calls[0] == "PUT if-none-match" and "PUT" not in cold.calls[1:]
    assert second.adopted and second.cold_version_id == first.cold_version_id
    assert len(vault.cold_versions("again.pdf")) == 1


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_server_without_conditional_writes_is_asked_first_from_then_on(vault: Vault) -> None:
    for key in ("a.pdf", "b.pdf"):
        vault.put(key, key.encode(), {"document-type": "contract"})
    cold = CountingCold(vault.cold, conditional_supported=False)
    copy = copier(vault, cold)
    copy.replicate("a.pdf", listed_size=5, first_copy=True)
    assert cold.calls == ["PUT if-none-match", "HEAD", "PUT", "HEAD"]
    cold.calls.clear()
    copy.replicate("b.pdf", listed_size=5, first_copy=True)
    assert cold.calls == ["HEAD", "PUT", "HEAD"]  # no second refused attempt
    assert all(len(vault.cold_versions(k)) == 1 for k in ("a.pdf", "b.pdf"))


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_key_seaweedfs_refuses_conditionally_is_copied_the_unconditional_way(vault: Vault) -> None:
    """SeaweedFS 4.48 answers 500 to a conditional PUT of a key with a ~250-byte segment (an unconditional
    PUT of the same key works): after the client's retries the copy falls back to HEAD + PUT."""
    key = "long/" + "s" * 250 + ".pdf"
    vault.put(key, b"long key", {"document-type": "invoice"})
    fast_cold = make_client(SiteConfig("cold", vault.env["AWS_S3_ENDPOINT"], "us-east-1",
                                       vault.env["AWS_S3_ACCESS_KEY_ID"], vault.env["AWS_S3_SECRET_ACCESS_KEY"],
                                       vault.cold_bucket, max_attempts=1))
    cold = CountingCold(fast_cold)
    outcome = copier(vault, cold).replicate(key, listed_size=8, first_copy=True)
    assert cold.calls == ["PUT if-none-match", "HEAD", "PUT", "HEAD"]
    assert not outcome.adopted and len(vault.cold_versions(key)) == 1
