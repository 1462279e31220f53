"""Deletion from the hot site: off by default, only for verified copies, audited."""

from __future__ import annotations

import datetime as dt

import pytest

from vault_pipeline.replication.hot_cleanup import delete_verified_hot_objects
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
