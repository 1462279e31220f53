"""Copies are recorded by the group committer while the workers copy on: a database that refuses to
record them never loses a copy nor makes a second one."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from vault_pipeline.replication.tracking import TrackingStore
from vault_pipeline_tests.conftest import Vault

pytestmark = pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)


def cold_copies_metadata(result: Any) -> dict[str, Any]:
    metadata = result.asset_materializations_for_node("cold_copies")[0].metadata
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def test_a_transient_database_error_while_recording_is_retried(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(20):
        vault.put(f"flaky/{i:02d}.pdf", f"document {i}".encode(), {"document-type": "contract"})
    vault.run_sensor()
    real = TrackingStore.mark_replicated_many
    failures = [2]

    def flaky(self: TrackingStore, *args: Any, **kwargs: Any) -> list[str]:
        if failures[0]:
            failures[0] -= 1
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(TrackingStore, "mark_replicated_many", flaky)
    result = vault.run_partition()
    assert result.success and failures == [0]
    assert cold_copies_metadata(result)["objects_copied"] == 20
    assert {r["status"] for r in vault.store.rows(vault.hot_bucket)} == {"replicated"}


def test_copies_the_database_would_not_record_are_adopted_by_the_next_run(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [f"unrecorded/{i:02d}.pdf" for i in range(10)]
    for key in keys:
        vault.put(key, key.encode(), {"document-type": "invoice"})
    vault.run_sensor()

    def refuse(self: TrackingStore, *args: Any, **kwargs: Any) -> list[str]:
        raise psycopg.OperationalError("could not write to the tracking database")

    with monkeypatch.context() as patch:
        patch.setattr(TrackingStore, "mark_replicated_many", refuse)
        failed = vault.run_partition()
    assert not failed.success
    rows = vault.store.rows(vault.hot_bucket)
    assert {r["status"] for r in rows} == {"failed"}
    assert all("copied and verified" in r["error_message"] and "recording failed" in r["error_message"]
               for r in rows)
    assert all(len(vault.cold_versions(key)) == 1 for key in keys)  # the copies are there, once

    again = vault.run_partition()
    assert again.success
    assert cold_copies_metadata(again)["objects_adopted"] == 10
    assert {r["status"] for r in vault.store.rows(vault.hot_bucket)} == {"replicated"}
    assert all(len(vault.cold_versions(key)) == 1 for key in keys)  # adopted, not copied again
