"""replication_day_complete_sensor and completion_webhook_sensor end to end: real replication runs through
Dagster (SeaweedFS sites, PostgreSQL), the run status sensor evaluated on their success events as the daemon
would, and a real loopback receiver. A complete day is notified once, signed; a day that grows is notified
again; a day with a failed object or a failed check is not notified."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from dagster import SkipReason, build_run_status_sensor_context, build_sensor_context

from vault_pipeline.alerting.completion import CompletionNotices, idempotency_key
from vault_pipeline.checks.cold_copies import CHECK_SPECS, CHECKS
from vault_pipeline.dagster_compat import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from vault_pipeline.jobs.replication import replication_job
from vault_pipeline.replication.shards import SHARD_TAG
from vault_pipeline.resources.completion_webhooks import completion_webhooks_from_env
from vault_pipeline.sensors.completion import DAY_SENSOR_NAME, build_completion_sensors, day_completions
from vault_pipeline.settings import load_settings
from vault_pipeline_tests.alerting.completion_receiver import SECRET, CompletionReceiver, receiver
from vault_pipeline_tests.alerting.conftest import TOKEN
from vault_pipeline_tests.alerting.test_tamper_alerts import forge
from vault_pipeline_tests.checks.test_tampering import run_checks
from vault_pipeline_tests.conftest import Vault, today_key

__all__ = ["receiver"]  # the fixture, imported for pytest
pytestmark = pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)


class CompletionSensors:
    """The two sensors over the test's vault, with the completion_webhooks resource the lead wires."""

    def __init__(self, vault: Vault, receiver: CompletionReceiver, **env: str) -> None:
        vault.configure(VAULT_COMPLETION_WEBHOOK_URLS=receiver.url, VAULT_COMPLETION_WEBHOOK_SECRET=SECRET, **env)
        settings, _ = load_settings()
        self.vault = vault
        self.webhooks = completion_webhooks_from_env(settings)
        self.delivery, self.day = build_completion_sensors(replication_job, configured=True,
                                                           minimum_interval_seconds=30)

    @property
    def resources(self) -> dict[str, Any]:  # the vault's, as last configured, plus the one the lead wires
        return {**self.vault.resources, "completion_webhooks": self.webhooks}

    def on_success(self, result: Any) -> None:
        assert result.success
        context = build_run_status_sensor_context(
            sensor_name=DAY_SENSOR_NAME, dagster_event=result.get_run_success_event(),
            dagster_instance=self.vault.instance, dagster_run=result.dagster_run, resources=self.resources)
        self.day(context)

    def tick(self) -> str:
        result = self.delivery(build_sensor_context(instance=self.vault.instance, resources=self.resources))
        assert isinstance(result, SkipReason)
        return result.skip_message or ""


def test_a_complete_day_is_notified_once_signed_and_again_when_it_grows(
    vault: Vault, receiver: CompletionReceiver,
) -> None:
    sensors = CompletionSensors(vault, receiver, VAULT_COMPLETION_WEBHOOK_RETRY_BASE_SECONDS="0.001")
    day = today_key()
    bodies = {f"done/{i}.pdf": b"%PDF-1.7 complete " + bytes([i]) * (i + 1) for i in range(3)}
    for key, body in bodies.items():
        vault.put(key, body, {"document-type": "invoice"})
    first = vault.run_partition(day)
    sensors.on_success(first)
    sensors.on_success(first)  # the same event evaluated again
    (got,) = receiver.all()
    assert got.verifies(SECRET) and not got.verifies("not the secret")
    notice = got.json
    assert notice["event"] == "replication_day_complete" and notice["subject"].startswith(f"{day}/3/")
    assert notice["idempotency_key"] == idempotency_key("replication_day_complete", notice["subject"])
    assert got.header("Idempotency-Key") == notice["idempotency_key"]
    facts = notice["facts"]
    assert facts["day"] == day and facts["objects"] == 3 and facts["bytes"] == sum(map(len, bodies.values()))
    assert facts["checks_passed"] == sorted(CHECKS) and facts["run_id"] == first.run_id
    assert notice["vault"] == {"source": "vault-pipeline", "hot_bucket": vault.hot_bucket,
                               "cold_bucket": vault.cold_bucket}

    sensors.on_success(vault.run_partition(day))  # nothing new on the day: the same completed state
    assert len(receiver.all()) == 1
    assert "0 delivered" in sensors.tick()

    vault.put("done/late.pdf", b"%PDF-1.7 a late upload", {"document-type": "invoice"})
    receiver.script = [500]  # the receiver is down when the day completes again
    sensors.on_success(vault.run_partition(day))
    assert [r.answered for r in receiver.all()] == [200, 500]
    assert "1 delivered" in sensors.tick()  # the retry (backoff of a millisecond here) goes through the sensor
    assert "0 delivered" in sensors.tick()
    late = receiver.accepted()[-1]
    assert late.json["facts"]["objects"] == 4 and late.json["subject"].startswith(f"{day}/4/")
    assert late.key != got.key and late.verifies(SECRET) and late.json["attempt"] == 2
    rows = CompletionNotices(vault.store.pool).rows()
    assert [(r["subject"], r["status"], r["attempts"]) for r in rows] == [
        (notice["subject"], "delivered", 1), (late.json["subject"], "delivered", 2)]
    assert all(TOKEN not in str(value) for row in rows for value in row.values())


def test_a_day_with_a_failed_object_or_a_failed_check_is_not_notified(
    vault: Vault, receiver: CompletionReceiver,
) -> None:
    sensors = CompletionSensors(vault, receiver)
    day = today_key()
    for name in ("a", "b"):
        vault.put(f"part/{name}.pdf", f"%PDF-1.7 {name}".encode(), {"document-type": "invoice"})
    copied = vault.run_partition(day)
    assert copied.success

    # A third object fails (its hot site does not answer) before the sensor sees the first run's success.
    vault.put("part/c.pdf", b"%PDF-1.7 c", {"document-type": "invoice"})
    vault.sweep()
    good_endpoint = vault.env["OVH_S3_ENDPOINT"]
    vault.configure(OVH_S3_ENDPOINT="http://127.0.0.1:9")
    assert not vault.run_partition(day, sweep=False).success
    assert vault.row("part/c.pdf")["status"] == "failed"
    sensors.on_success(copied)
    assert receiver.all() == []
    (state,) = day_completions(vault.instance, vault.store, vault.hot_bucket, [day], [])
    assert (state.tally.objects, state.tally.verified, state.complete) == (3, 2, False)

    # Every object verified, but a newer evaluation of a check failed: not complete either.
    vault.configure(OVH_S3_ENDPOINT=good_endpoint)
    repaired = vault.run_partition(day)
    assert repaired.success and vault.row("part/c.pdf")["status"] == "replicated"
    forge(vault, "part/a.pdf")
    assert not run_checks(vault)["checksum"].passed
    sensors.on_success(repaired)
    assert receiver.all() == []
    (state,) = day_completions(vault.instance, vault.store, vault.hot_bucket, [day], [s.key for s in CHECK_SPECS])
    assert state.tally.complete and "checksum" in state.checks_not_passed and not state.complete
    assert CompletionNotices(vault.store.pool).rows() == []


def test_a_ranged_run_notifies_each_complete_day_of_its_range(vault: Vault, receiver: CompletionReceiver) -> None:
    sensors = CompletionSensors(vault, receiver)
    vault.put("range/a.pdf", b"%PDF-1.7 a", {"document-type": "invoice"})
    today = dt.datetime.now(dt.UTC).date()
    yesterday = (today - dt.timedelta(days=1)).isoformat()
    vault.sweep()
    ranged = vault.defs.resolve_job_def("replication_job").execute_in_process(  # a backfill of two days
        instance=vault.instance, raise_on_error=False,
        tags={ASSET_PARTITION_RANGE_START_TAG: yesterday, ASSET_PARTITION_RANGE_END_TAG: today_key()})
    sensors.on_success(ranged)
    (got,) = receiver.all()  # yesterday has no object: nothing to announce for it
    assert got.json["facts"]["day"] == today_key() and got.json["facts"]["objects"] == 1
    assert got.json["facts"]["checks_passed"] == sorted(CHECKS)


def test_a_sharded_day_is_complete_once_every_shard_passed_its_checks(
    vault: Vault, receiver: CompletionReceiver,
) -> None:
    sensors = CompletionSensors(vault, receiver)
    day = today_key()
    for i in range(4):
        vault.put(f"shard/{i}.pdf", f"%PDF-1.7 {i}".encode(), {"document-type": "invoice"})
    first = vault.run_partition(day, tags={SHARD_TAG: "0/2"})  # it steals the other slice's rows too
    sensors.on_success(first)
    assert receiver.all() == [], "only shard 0's slice was audited"
    (state,) = day_completions(vault.instance, vault.store, vault.hot_bucket, [day], [s.key for s in CHECK_SPECS])
    assert state.tally.complete and state.checks_not_passed == tuple(sorted(CHECKS))
    sensors.on_success(vault.run_partition(day, tags={SHARD_TAG: "1/2"}, sweep=False))
    (got,) = receiver.all()
    assert got.json["facts"]["objects"] == 4 and got.json["facts"]["checks_passed"] == sorted(CHECKS)
