"""hot_bucket_sensor's run requests against the real tracking database and Dagster's run storage: one run per
shard for a large day, a new run_key when a dead run's leases expire, a new request after a failed run
(after a backoff that grows, never while a run is in flight), and a feed that cannot even be built."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import psycopg
import pytest
from dagster import DagsterEvent, DagsterEventType, DagsterRun, DagsterRunStatus

from vault_pipeline.replication.inventory import ListedObject
from vault_pipeline_tests.conftest import Vault, fresh_database, sql, today_key

pytestmark = pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)


def today() -> dt.date:  # read at each use: a test may cross midnight
    return dt.datetime.now(dt.UTC).date()


def test_a_large_day_gets_one_run_per_shard_and_a_small_day_one_run(vault: Vault) -> None:
    vault.configure(VAULT_SHARD_MIN_OBJECTS="3", VAULT_MAX_SHARDS="3")
    for i in range(8):
        vault.put(f"big/{i}.pdf")
    old = dt.datetime(2025, 3, 14, 9, 30, tzinfo=dt.UTC)  # a small day, registered as a sweep would have
    vault.store.register([ListedObject(f"old/{i}.pdf", f"etag-{i}", 3, old) for i in range(2)],
                         source_bucket=vault.hot_bucket, destination_bucket=vault.cold_bucket)
    requests = vault.run_sensor().run_requests
    by_day: dict[str, list[Any]] = {}
    for request in requests:
        by_day.setdefault(request.partition_key, []).append(request)
    assert sorted(by_day) == ["2025-03-14", today_key()]
    [small] = by_day["2025-03-14"]
    assert "vault/shard" not in small.tags and "|shard:" not in small.run_key
    shards = by_day[today_key()]  # 8 objects, one run per 3, at most 3
    assert [r.tags["vault/shard"] for r in shards] == ["0/3", "1/3", "2/3"]
    assert [r.run_key.rsplit("|shard:", 1)[1] for r in shards] == ["0/3", "1/3", "2/3"]
    assert len({r.run_key.rsplit("|shard:", 1)[0] for r in shards}) == 1  # one request of the day, in shards
    assert all(r.tags["vault/pending_objects"] == "8" for r in shards)
    assert sorted(r.run_key for r in vault.run_sensor().run_requests) == sorted(r.run_key for r in requests)

    metadata = []
    for request in shards:  # as the daemon would launch them (one after another here)
        result = vault.run_partition(request.partition_key, tags=request.tags, sweep=False)
        assert result.success
        metadata.append(result.asset_materializations_for_node("cold_copies")[0].metadata)
    assert {r["status"] for r in vault.store.rows(vault.hot_bucket) if r["s3_key"].startswith("big/")} == {
        "replicated"}
    assert sum(m["objects_own_slice"].value + m["objects_stolen"].value for m in metadata) == 8
    assert metadata[0]["objects_stolen"].value > 0  # the first shard alone: it helped with the other slices
    assert [r.partition_key for r in vault.run_sensor().run_requests] == ["2025-03-14"]


def test_expired_leases_give_the_day_a_new_run_key(vault: Vault) -> None:
    for i in range(3):
        vault.put(f"held/{i}.pdf")
    vault.sweep()
    # A run claims the three rows and dies (its process killed: nothing releases them).
    claimed = vault.store.claim(owner="dead-run/1", source_bucket=vault.hot_bucket, first_day=today(),
                                last_day=today(), limit=10, lease_seconds=600, not_attempted_since=vault.store.db_now())
    assert len(claimed) == 3
    vault.put("held/late.pdf")  # registered after the claim: the newest change of the day
    [before] = vault.run_sensor().run_requests
    assert before.tags["vault/pending_objects"] == "1"
    with psycopg.connect(vault.dsn, autocommit=True) as conn:  # the lease runs out now (after that tick)
        conn.execute("UPDATE vault_secure.replication_status SET lease_expires_at = clock_timestamp()"
                     " WHERE lease_owner = 'dead-run/1'")
    [after] = vault.run_sensor(sweep=False).run_requests
    assert after.tags["vault/pending_objects"] == "4"
    assert after.run_key != before.run_key  # Dagster runs it: the key is new
    # Without the lease in it, the day's latest would not have moved: the late row is the newest change.
    [[newest_change]] = sql(vault.dsn, "SELECT max(updated_at) FROM vault_secure.replication_status")
    assert newest_change.isoformat() in before.run_key and newest_change.isoformat() not in after.run_key


def queued(vault: Vault, run_key: str, tags: dict[str, str]) -> DagsterRun:
    """A run the daemon created from a request and put in the queue, as its run storage records it."""
    from vault_pipeline.dagster_compat import GrpcServerCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin

    # Where the daemon would launch it from (a queued run must name its code location; nothing connects).
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(GrpcServerCodeLocationOrigin(
        "127.0.0.1", 4000, location_name="vault_pipeline"), "__repository__"), "replication_job")
    tags = {**tags, "dagster/partition": today_key(), "dagster/run_key": run_key,
            "dagster/sensor_name": "hot_bucket_sensor"}
    run = vault.instance.create_run_for_job(job_def=vault.defs.resolve_job_def("replication_job"),
                                            remote_job_origin=origin, tags=tags)
    event(vault, run, DagsterEventType.RUN_ENQUEUED)
    assert vault.instance.get_run_by_id(run.run_id).status == DagsterRunStatus.QUEUED
    return run


def event(vault: Vault, run: DagsterRun, kind: DagsterEventType) -> None:
    vault.instance.handle_run_event(run.run_id, DagsterEvent(event_type_value=kind.value, job_name=run.job_name))


def launched_and_failed(vault: Vault, run_key: str, tags: dict[str, str]) -> DagsterRun:
    """A run the daemon could not launch: the queued run coordinator fails it (e.g. the Celery broker was
    down), as its run storage records it."""
    run = queued(vault, run_key, tags)
    vault.instance.report_run_failed(run, message="launching the run failed: broker down")
    return run


def ended(vault: Vault, run: DagsterRun) -> float:
    record = vault.instance.get_run_record_by_id(run.run_id)
    assert record is not None and record.dagster_run.status == DagsterRunStatus.FAILURE
    assert record.end_time is not None
    return record.end_time


def sleep_until(when: float) -> None:
    time.sleep(max(0.0, when - time.time()))


def test_a_failed_run_is_requested_again_after_a_backoff_that_grows(vault: Vault,
                                                                    capfd: pytest.CaptureFixture[str]) -> None:
    vault.configure(VAULT_RUN_RETRY_BASE_SECONDS="2", VAULT_RUN_RETRY_MAX_SECONDS="60")
    for i in range(2):
        vault.put(f"retry/{i}.pdf")
    [first] = vault.run_sensor().run_requests
    failed = launched_and_failed(vault, first.run_key, first.tags)
    # Its key is used: without the rule, nothing would be asked before the hour changes.
    assert vault.run_sensor(sweep=False).run_requests == []
    assert f"run {failed.run_id} failed (1st consecutive failure), next run in" in capfd.readouterr().err
    sleep_until(ended(vault, failed) + 2.05)
    [again] = vault.run_sensor(sweep=False).run_requests
    assert again.run_key == f"{first.run_key}|after:{failed.run_id}"
    assert again.tags["vault/after_failed_run"] == failed.run_id and again.partition_key == today_key()
    log = capfd.readouterr().err
    assert f"requested again after failed run {failed.run_id}, 1st consecutive failure, waited 2 s" in log

    # While the new run is queued, and then running, nothing more is asked.
    retried = queued(vault, again.run_key, again.tags)
    assert vault.run_sensor(sweep=False).run_requests == []
    event(vault, retried, DagsterEventType.RUN_START)
    assert vault.instance.get_run_by_id(retried.run_id).status == DagsterRunStatus.STARTED
    assert vault.run_sensor(sweep=False).run_requests == []
    # It dies: the second consecutive failure waits twice as long.
    vault.instance.report_run_failed(retried, message="its worker died")
    second_end = ended(vault, retried)
    assert vault.run_sensor(sweep=False).run_requests == []
    sleep_until(second_end + 2.5)
    assert vault.run_sensor(sweep=False).run_requests == []  # 2 s was the first backoff, not this one
    assert "(2nd consecutive failure), next run in" in capfd.readouterr().err
    sleep_until(second_end + 4.05)
    [third] = vault.run_sensor(sweep=False).run_requests
    assert third.run_key == f"{first.run_key}|after:{retried.run_id}"
    assert f"after failed run {retried.run_id}, 2nd consecutive failure" in capfd.readouterr().err

    # The run finally succeeds: the day is done and nothing more is asked.
    assert vault.run_partition(today_key(), tags=third.tags, sweep=False).success
    assert vault.run_sensor(sweep=False).run_requests == []


def test_an_application_feed_whose_database_is_down_when_it_is_built_fails_only_itself(
        vault: Vault, pg_server: Any, capfd: pytest.CaptureFixture[str]) -> None:
    app = iter(fresh_database(pg_server, "app"))
    app_dsn = next(app)
    next(app, None)  # dropped: the feed cannot be built (ApplicationDatabaseUnavailable)
    vault.configure(VAULT_CHANGE_FEEDS="app-table", VAULT_APP_DATABASE_URL=app_dsn)
    vault.put("swept-while-the-app-db-is-down.pdf")
    result = vault.run_sensor()  # the sweep registered it: its day is asked for all the same
    assert [r.partition_key for r in result.run_requests] == [today_key()]
    assert json.loads(result.cursor) == {"feeds": {}}  # nothing read: read from its beginning next tick
    log = capfd.readouterr().err
    assert "feed app-table: application database" in log and "read again next tick" in log
