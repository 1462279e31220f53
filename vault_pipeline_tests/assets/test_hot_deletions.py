"""Deletion from the hot site: off by default, only for verified copies, audited."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import pytest

from vault_pipeline.replication.hot_cleanup import (
    HotDeletionRefused,
    conditional_delete_problem,
    delete_verified_hot_objects,
)
from vault_pipeline.replication.inventory import PROBE_PREFIX
from vault_pipeline_tests.conftest import Vault, sql


def hot_keys(vault: Vault) -> set[str]:
    return {o["Key"] for o in vault.hot.list_objects_v2(Bucket=vault.hot_bucket).get("Contents", [])}


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_deletion_is_off_by_default(vault: Vault) -> None:
    vault.put("keep.pdf", b"data", {"document-type": "payslip"})
    runs = vault.sensor_and_runs()
    assert all(r.success for r in runs)
    assert hot_keys(vault) == {"keep.pdf"}
    assert runs[0].asset_materializations_for_node("hot_deletions")[0].metadata["enabled"].value is False


def test_verified_copies_are_deleted_and_audited(vault: Vault) -> None:
    vault.configure(DELETE_FROM_OVH_AFTER_REPLICATION="true")
    for i in range(3):
        vault.put(f"del/{i}.pdf", f"doc {i}".encode(), {"document-type": "invoice"})
    runs = vault.sensor_and_runs()
    assert all(r.success for r in runs)
    assert hot_keys(vault) == set()
    for i in range(3):
        row = vault.row(f"del/{i}.pdf")
        assert row["status"] == "replicated" and row["hot_deleted_at"] is not None
        assert len(vault.cold_versions(f"del/{i}.pdf")) == 1  # the cold copy is untouched
    events = sql(vault.dsn, "SELECT count(*) FROM vault_secure.audit_logs WHERE event_type = 'HOT_DELETED'")
    assert events == [(3,)]
    # The next sweep does not mistake the deleted objects for anything to do.
    assert not vault.run_sensor().run_requests


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_unverified_or_changed_objects_are_kept(vault: Vault) -> None:
    vault.put("changed.pdf", b"v1", {"document-type": "invoice"})
    vault.put("copied.pdf", b"x", {"document-type": "invoice"})
    assert all(r.success for r in vault.sensor_and_runs())
    vault.put("changed.pdf", b"v2 not yet copied", {"document-type": "invoice"})
    vault.put("new-unreplicated.pdf", b"y", {"document-type": "invoice"})
    # Deletion alone (no copy) on a day where one source changed and one object is new.
    vault.configure(DELETE_FROM_OVH_AFTER_REPLICATION="true")
    today = dt.datetime.now(dt.UTC).date()
    report = delete_verified_hot_objects(
        store=vault.store, hot=vault.hot, hot_bucket=vault.hot_bucket, cold=vault.cold,
        cold_bucket=vault.cold_bucket, first_day=today, last_day=today, run_id=None,
    )
    assert report.deleted == ["copied.pdf"]
    assert dict(report.kept) == {"changed.pdf": "hot object changed since it was copied"}
    assert hot_keys(vault) == {"changed.pdf", "new-unreplicated.pdf"}


class _UploadAfterCheck:
    """The hot client, with a new upload of `key` landing right after deletion's last check of it (the HEAD
    that compares ETags) and before its DELETE: the race, made deterministic."""

    def __init__(self, client: Any, bucket: str, key: str, body: bytes) -> None:
        self.client, self.bucket, self.key, self.body, self.landed = client, bucket, key, body, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def head_object(self, **kwargs: Any) -> Any:
        response = self.client.head_object(**kwargs)
        if kwargs["Key"] == self.key and not self.landed:
            self.landed = True
            self.client.put_object(Bucket=self.bucket, Key=self.key, Body=self.body,
                                   Metadata={"document-type": "invoice"})
        return response


class _IgnoresIfMatch:
    """A hot server that silently ignores If-Match on DeleteObject (as some S3-compatible servers do)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def delete_object(self, **kwargs: Any) -> Any:
        kwargs.pop("IfMatch", None)
        return self.client.delete_object(**kwargs)


def _delete_today(vault: Vault, hot: Any) -> Any:
    today = dt.datetime.now(dt.UTC).date()
    return delete_verified_hot_objects(
        store=vault.store, hot=hot, hot_bucket=vault.hot_bucket, cold=vault.cold, cold_bucket=vault.cold_bucket,
        first_day=today, last_day=today, run_id=None,
    )


@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned-hot", "versioned-hot"])
def test_upload_between_verification_and_deletion_survives_and_is_replicated(vault: Vault, versioned: bool) -> None:
    if versioned:
        vault.hot.put_bucket_versioning(Bucket=vault.hot_bucket, VersioningConfiguration={"Status": "Enabled"})
    vault.put("race.pdf", b"old bytes, copied", {"document-type": "invoice"})
    assert all(r.success for r in vault.sensor_and_runs())
    copied = vault.row("race.pdf")
    assert (copied["source_version_id"] is not None) is versioned

    new = b"new bytes uploaded between the check and the DELETE"
    report = _delete_today(vault, _UploadAfterCheck(vault.hot, vault.hot_bucket, "race.pdf", new))
    # The new bytes survive: unversioned, the DELETE's If-Match refuses (412); versioned, only the copied
    # version is deleted.
    assert vault.hot.get_object(Bucket=vault.hot_bucket, Key="race.pdf")["Body"].read() == new
    if versioned:
        assert report.deleted == ["race.pdf"]
        versions = vault.hot.list_object_versions(Bucket=vault.hot_bucket, Prefix="race.pdf")["Versions"]
        assert copied["source_version_id"] not in {v["VersionId"] for v in versions}
    else:
        assert report.deleted == [] and "412" in dict(report.kept)["race.pdf"]
    # ... and are then replicated.
    assert all(r.success for r in vault.sensor_and_runs())
    row = vault.row("race.pdf")
    assert row["status"] == "replicated" and row["sha256"] == hashlib.sha256(new).hexdigest()
    assert len(vault.cold_versions("race.pdf")) == 2  # the old copy stays locked, the new one joins it


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_deletion_refuses_when_the_server_ignores_if_match_on_an_unversioned_bucket(vault: Vault) -> None:
    vault.put("keep-me.pdf", b"data", {"document-type": "invoice"})
    assert all(r.success for r in vault.sensor_and_runs())
    with pytest.raises(HotDeletionRefused, match=r"does not honour If-Match.*Enable versioning"):
        _delete_today(vault, _IgnoresIfMatch(vault.hot))
    assert hot_keys(vault) == {"keep-me.pdf"}
    assert vault.row("keep-me.pdf")["hot_deleted_at"] is None
    # The probe's sentinel is gone and was never a document.
    assert not vault.hot.list_objects_v2(Bucket=vault.hot_bucket, Prefix=PROBE_PREFIX).get("Contents")


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_versioned_bucket_deletes_by_version_even_where_if_match_is_ignored(vault: Vault) -> None:
    vault.hot.put_bucket_versioning(Bucket=vault.hot_bucket, VersioningConfiguration={"Status": "Enabled"})
    vault.put("v.pdf", b"data", {"document-type": "invoice"})
    assert all(r.success for r in vault.sensor_and_runs())
    report = _delete_today(vault, _IgnoresIfMatch(vault.hot))
    assert report.deleted == ["v.pdf"] and hot_keys(vault) == set()


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_the_probe_sees_that_the_real_hot_server_honours_if_match(vault: Vault) -> None:
    assert conditional_delete_problem(vault.hot, vault.hot_bucket) is None  # SeaweedFS answers 412
