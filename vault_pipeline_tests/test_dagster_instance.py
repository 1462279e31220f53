"""dagster.yaml keeps Dagster's runs and events in PostgreSQL (dagster-postgres), not in local files."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance

from vault_pipeline_tests.conftest import Vault, today_key

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_runs_are_stored_in_postgres_with_queued_runs(vault: Vault, pg_server, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pg_server.create_database("dagster_storage_test")
    url = pg_server.dsn("dagster_storage_test").replace("postgresql://", "postgresql+psycopg2://", 1)
    monkeypatch.setenv("VAULT_DAGSTER_DATABASE_URL", url)
    shutil.copyfile(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # as a deployment does; read by DagsterInstance.get()
    try:
        with DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            assert instance.run_coordinator.inst_data.config_dict["max_concurrent_runs"] == 4
            vault.put("stored.pdf", b"x", {"document-type": "invoice"})
            vault.instance = instance
            assert vault.run_partition(today_key()).success
        with psycopg.connect(pg_server.dsn("dagster_storage_test")) as conn:
            assert conn.execute("SELECT status FROM runs").fetchall() == [("SUCCESS",)]
    finally:
        pg_server.drop_database("dagster_storage_test")
