"""hot_bucket_sensor: lists nothing, run requests per day with dedup, backlog warning."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import psycopg
import pytest

from vault_pipeline.replication.inventory import ListedObject
from vault_pipeline_tests.conftest import Vault, fresh_database, today_key

pytestmark = pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)


def test_the_sensor_lists_nothing(vault: Vault) -> None:
    """Detection is the feeds' and the sweep's: a tick without them registers nothing and asks for nothing."""
    for i in range(5):
        vault.put(f"unseen/{i}.pdf")
    result = vault.run_sensor(sweep=False)
    assert not result.run_requests and vault.store.rows(vault.hot_bucket) == []
    assert json.loads(result.cursor) == {"feeds": {}}
    vault.sweep()
    assert [r.partition_key for r in vault.run_sensor(sweep=False).run_requests] == [today_key()]


def test_a_cursor_of_the_listing_sensor_of_before_is_read_as_no_cursor(vault: Vault) -> None:
    vault.cursor = json.dumps({"token": "abc", "sweep_started": None, "sweeps_completed": 3, "objects_listed": 9})
    vault.put("after-upgrade.pdf")
    assert [r.partition_key for r in vault.run_sensor().run_requests] == [today_key()]
    assert json.loads(vault.cursor) == {"feeds": {}}


def test_one_run_request_per_day_with_a_stable_run_key(vault: Vault) -> None:
    vault.put("a.pdf")
    vault.put("b.pdf")
    # An object of another day, registered as a sweep would have (SeaweedFS cannot backdate LastModified).
    old = dt.datetime(2025, 3, 14, 9, 30, tzinfo=dt.UTC)
    vault.store.register([ListedObject("old/c.pdf", "etag-c", 3, old)], source_bucket=vault.hot_bucket,
                         destination_bucket=vault.cold_bucket)
    first = vault.run_sensor().run_requests
    assert sorted(r.partition_key for r in first) == ["2025-03-14", today_key()]
    second = vault.run_sensor().run_requests  # nothing changed: the same run keys, so Dagster dedups them
    assert sorted(r.run_key for r in second) == sorted(r.run_key for r in first)
    vault.put("late.pdf")
    third = {r.partition_key: r.run_key for r in vault.run_sensor().run_requests}
    assert third[today_key()] not in {r.run_key for r in first}  # new work, new run
    for request in first:
        assert not request.run_config  # the run reads the day from the database


def test_objects_registered_by_a_failed_tick_still_get_their_run(vault: Vault) -> None:
    vault.put("registered-but-no-run.pdf")
    listed = vault.hot.list_objects_v2(Bucket=vault.hot_bucket)["Contents"][0]
    vault.store.register(
        [ListedObject(listed["Key"], listed["ETag"].strip('"'), listed["Size"], listed["LastModified"])],
        source_bucket=vault.hot_bucket, destination_bucket=vault.cold_bucket,
    )  # as if the tick died after registering, before Dagster got its run request
    requests = vault.run_sensor().run_requests
    assert [r.partition_key for r in requests] == [today_key()]


def test_backlog_warning(vault: Vault, capfd: pytest.CaptureFixture[str]) -> None:
    vault.configure(VAULT_BACKLOG_WARNING_THRESHOLD="5")
    for i in range(8):
        vault.put(f"backlog/{i}.pdf")
    vault.run_sensor()  # the sensor's log goes to Dagster's console logger (and the UI's tick log)
    assert "replication backlog: 8 objects pending (threshold 5)" in capfd.readouterr().err
    for i in range(8, 12):
        vault.put(f"backlog/{i}.pdf")
    vault.configure(VAULT_BACKLOG_WARNING_THRESHOLD="100")
    vault.run_sensor()
    assert "replication backlog" not in capfd.readouterr().err


def test_the_filer_feed_registers_and_the_run_copies_without_any_listing(vault: Vault, hot_site: Any) -> None:
    """`make run`'s detection: the SeaweedFS filer stream, read by the sensor tick, no sweep at all."""
    vault.configure(VAULT_CHANGE_FEEDS="seaweedfs-filer",
                    VAULT_SEAWEEDFS_FILER=f"127.0.0.1:{hot_site.ports.filer}.{hot_site.ports.filer_grpc}")
    vault.put("feed/payslip é+%.pdf", b"%PDF feed", {"document-type": "payslip"})
    result = vault.run_sensor(sweep=False)
    assert [r.partition_key for r in result.run_requests] == [today_key()]
    assert set(json.loads(result.cursor)["feeds"]) == {"seaweedfs-filer"}
    assert vault.row("feed/payslip é+%.pdf")["status"] == "pending"
    vault.put("feed/second.pdf")
    again = vault.run_sensor(sweep=False)  # from the stored cursor: only what is new is HEADed
    assert vault.row("feed/second.pdf")["status"] == "pending"
    assert json.loads(again.cursor)["feeds"]["seaweedfs-filer"] >= json.loads(result.cursor)["feeds"]["seaweedfs-filer"]
    assert vault.run_partition(today_key(), sweep=False).success
    assert {r["status"] for r in vault.store.rows(vault.hot_bucket)} == {"replicated"}


def test_a_feed_that_cannot_be_read_keeps_its_cursor_and_the_runs_are_still_requested(
        vault: Vault, capfd: pytest.CaptureFixture[str]) -> None:
    vault.configure(VAULT_CHANGE_FEEDS="seaweedfs-filer", VAULT_SEAWEEDFS_FILER="127.0.0.1:9.10009")
    vault.put("swept.pdf")
    vault.cursor = json.dumps({"feeds": {"seaweedfs-filer": "1700000000000000000"}})
    result = vault.run_sensor()  # the sweep registered swept.pdf: its day is asked for all the same
    assert [r.partition_key for r in result.run_requests] == [today_key()]
    assert json.loads(result.cursor) == {"feeds": {"seaweedfs-filer": "1700000000000000000"}}
    assert "feed seaweedfs-filer: filer 127.0.0.1:9.10009" in capfd.readouterr().err


def test_the_application_table_feed_through_the_sensor(vault: Vault, pg_server: Any) -> None:
    """The specification's source of new documents, read by the sensor: announced ids kept, no listing."""
    app = iter(fresh_database(pg_server, "app"))
    app_dsn = next(app)
    try:
        with psycopg.connect(app_dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE documents (id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, user_id UUID,"
                         " created_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        vault.configure(VAULT_CHANGE_FEEDS="app-table", VAULT_APP_DATABASE_URL=app_dsn,
                        VAULT_APP_USER_ID_COLUMN="user_id")
        user = "6f1c2a4e-0d6b-4c53-9f43-2d6a3b3e8f10"
        for key in ("app/invoice 1.pdf", "app/facture-é+%.pdf"):
            vault.put(key, b"%PDF app", {"document-type": "invoice"})
            with psycopg.connect(app_dsn, autocommit=True) as conn:
                conn.execute("INSERT INTO documents (key, user_id) VALUES (%s, %s)", (key, user))
        vault.put("app/not-announced.pdf")  # on the hot site, not in the table: the sweep's, not this feed's
        result = vault.run_sensor(sweep=False)
        assert [r.partition_key for r in result.run_requests] == [today_key()]
        assert {r["s3_key"] for r in vault.store.rows(vault.hot_bucket)} == {"app/invoice 1.pdf",
                                                                               "app/facture-é+%.pdf"}
        assert vault.run_partition(today_key(), sweep=False).success
        row = vault.row("app/invoice 1.pdf")
        assert (row["status"], str(row["user_id"])) == ("replicated", user)  # announced, kept by the copy
    finally:
        next(app, None)
