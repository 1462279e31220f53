"""Alert sensors end to end: real PostgreSQL, real S3 sites, a real local webhook receiver.

A failed ERROR check and a failed run each give exactly one POST per distinct failure, never one per
tick, then one recovery notice; a webhook that is down costs nothing but a later delivery; the webhook
URL (its path holds the token) appears in no log line.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    BackfillPolicy,
    DagsterEvent,
    DagsterEventType,
    DagsterRun,
    DagsterRunStatus,
    EnvVar,
    MetadataValue,
    SensorResult,
    asset,
    asset_check,
    build_run_status_sensor_context,
    build_sensor_context,
    materialize,
)

from vault_pipeline.alerting import ALERT_LOGGER_NAME, AlertStore
from vault_pipeline.dagster_compat import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    AssetCheckEvaluationPlanned,
)
from vault_pipeline.partitions import daily_partitions
from vault_pipeline.resources.alerts import alerts_resource_from_env
from vault_pipeline.sensors.alerts import AlertSensorCursor, build_alert_sensors
from vault_pipeline.settings import ConfigurationError
from vault_pipeline_tests.alerting.conftest import TOKEN, WebhookReceiver, closed_port
from vault_pipeline_tests.conftest import Vault, today_key

SEAWEED_ONLY = pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
DAY = "2025-03-04"


def probe_definitions(outcome: dict[str, list[str]]) -> tuple[Any, Any]:
    """A tiny partitioned asset and an ERROR check that fails while outcome["failing"] lists keys."""

    @asset(name="alert_probe", partitions_def=daily_partitions, backfill_policy=BackfillPolicy.single_run())
    def alert_probe() -> None:
        return None

    @asset_check(asset=alert_probe, name="fixity", partitions_def=daily_partitions, blocking=False)
    def fixity() -> AssetCheckResult:
        failing = list(outcome["failing"])
        return AssetCheckResult(
            passed=not failing, severity=AssetCheckSeverity.ERROR,
            description=f"fixity: {len(failing)} object(s) fail" if failing else "fixity: all pass",
            metadata={"failing_keys": MetadataValue.json(failing), "objects_failing": MetadataValue.int(len(failing)),
                      "days": MetadataValue.json(outcome.get("days", []))},
        )

    return alert_probe, fixity


class CheckSensorHarness:
    """Evaluates check_alert_sensor as the daemon would: same instance, cursor carried between ticks."""

    def __init__(self, vault: Vault, check_keys: list[Any]) -> None:
        self.vault = vault
        self.sensor = build_alert_sensors(check_keys=check_keys, monitored_jobs=[], minimum_interval_seconds=30)[0]
        self.cursor: str | None = None

    def tick(self) -> SensorResult:
        context = build_sensor_context(instance=self.vault.instance, cursor=self.cursor,
                                       resources=self.vault.resources)
        result = self.sensor(context)
        assert isinstance(result, SensorResult)
        self.cursor = result.cursor
        return result


def alert_store(vault: Vault) -> AlertStore:
    return AlertStore(vault.store.pool)


def alert_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == ALERT_LOGGER_NAME]


def assert_url_never_logged(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
                            vault: Vault) -> None:
    out, err = capfd.readouterr()
    secret = TOKEN.rsplit("/", 1)[-1]
    for text in (caplog.text, out, err, json.dumps([{k: str(v) for k, v in row.items()}
                                                    for row in alert_store(vault).rows()])):
        assert secret not in text and TOKEN not in text


@SEAWEED_ONLY
def test_failed_check_alerts_once_then_recovers_once(
    vault: Vault, webhook: WebhookReceiver, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    vault.configure(VAULT_ALERT_WEBHOOK_URL=webhook.url)
    outcome = {"failing": ["2025/03/04/a.pdf", "2025/03/04/b.pdf"], "days": [DAY]}
    probe, fixity = probe_definitions(outcome)
    sensors = CheckSensorHarness(vault, [fixity.check_key])
    first_run = materialize([probe, fixity], partition_key=DAY, instance=vault.instance)

    started = time.monotonic()
    sensors.tick()
    tick_seconds = time.monotonic() - started
    assert len(webhook.bodies) == 1
    alert = webhook.bodies[0]
    assert alert["event"] == "alert" and alert["severity"] == "ERROR" and alert["kind"] == "check"
    assert alert["key"] == f"check:alert_probe:fixity:{DAY}"
    assert (alert["asset"], alert["check"], alert["partition"]) == ("alert_probe", "fixity", DAY)
    assert alert["run_id"] == first_run.run_id
    assert alert["failing_keys"] == outcome["failing"] and alert["days"] == [DAY]
    assert alert["details"]["objects_failing"] == 2
    assert "ALERT" in alert["text"] and "alert_probe:fixity" in alert["text"] and DAY in alert["text"]
    assert "2025/03/04/a.pdf" in alert["text"] and alert["time"].endswith("Z")

    sensors.tick()  # nothing new
    materialize([probe, fixity], partition_key=DAY, instance=vault.instance)  # still failing
    sensors.tick()
    assert len(webhook.bodies) == 1, "an ongoing failure must not be re-sent"
    row = alert_store(vault).get(alert["key"])
    assert row["state"] == "open" and row["occurrences"] == 2 and row["delivery_state"] == "delivered"

    outcome["failing"], outcome["days"] = [], []
    fixed_run = materialize([probe, fixity], partition_key=DAY, instance=vault.instance)
    sensors.tick()
    sensors.tick()
    assert [b["event"] for b in webhook.bodies] == ["alert", "recovery"]
    recovery = webhook.bodies[1]
    assert recovery["key"] == alert["key"] and recovery["run_id"] == fixed_run.run_id
    assert "RESOLVED" in recovery["text"] and recovery["details"]["occurrences"] == 2
    assert recovery["details"]["alert_delivered"] is True

    # The same two notices, once each, as structured log lines (one JSON line per alert).
    assert [line["event"] for line in alert_lines(caplog)] == ["alert", "recovery"]
    assert alert_lines(caplog)[0] == alert
    assert_url_never_logged(caplog, capfd, vault)
    print(f"check sensor tick with one alert delivered: {tick_seconds * 1000:.0f} ms")


@SEAWEED_ONLY
def test_new_failing_keys_extend_the_open_alert_once_even_if_repaired_before_the_tick(
    vault: Vault, webhook: WebhookReceiver,
) -> None:
    vault.configure(VAULT_ALERT_WEBHOOK_URL=webhook.url)
    outcome = {"failing": ["a.pdf"], "days": [DAY]}
    probe, fixity = probe_definitions(outcome)
    sensors = CheckSensorHarness(vault, [fixity.check_key])
    materialize([probe, fixity], partition_key=DAY, instance=vault.instance)
    sensors.tick()
    assert [b["new_keys"] for b in webhook.bodies] == [["a.pdf"]]

    outcome["failing"] = ["a.pdf", "b.pdf"]
    materialize([probe, fixity], partition_key=DAY, instance=vault.instance)
    outcome["failing"] = ["a.pdf"]  # b.pdf repaired before the sensor looked: it was damage all the same
    materialize([probe, fixity], partition_key=DAY, instance=vault.instance)
    result = sensors.tick()
    assert "1 extended" in (result.skip_reason.skip_message or "")
    assert [b["new_keys"] for b in webhook.bodies] == [["a.pdf"], ["b.pdf"]]
    assert webhook.bodies[1]["failing_keys"] == ["a.pdf", "b.pdf"]

    materialize([probe, fixity], partition_key=DAY, instance=vault.instance)  # a.pdf alone, as before
    sensors.tick()
    assert len(webhook.bodies) == 2
    row = alert_store(vault).get(f"check:alert_probe:fixity:{DAY}")
    assert row["occurrences"] == 4 and row["extensions"] == 1 and row["seen_keys"] == ["a.pdf", "b.pdf"]


@SEAWEED_ONLY
def test_ranged_evaluation_is_keyed_by_its_range_and_its_success_clears_the_days_it_covers(
    vault: Vault, webhook: WebhookReceiver,
) -> None:
    vault.configure(VAULT_ALERT_WEBHOOK_URL=webhook.url)
    outcome = {"failing": ["x.pdf"]}
    probe, fixity = probe_definitions(outcome)
    sensors = CheckSensorHarness(vault, [fixity.check_key])
    materialize([probe, fixity], partition_key="2025-03-05", instance=vault.instance)
    ranged = {ASSET_PARTITION_RANGE_START_TAG: "2025-03-04", ASSET_PARTITION_RANGE_END_TAG: "2025-03-06"}
    materialize([probe, fixity], instance=vault.instance, tags=ranged)
    sensors.tick()
    assert sorted(b["partition"] for b in webhook.bodies) == ["2025-03-04..2025-03-06", "2025-03-05"]
    # The ranged run left one planned row per day that never completes: they must not hold the cursor.
    progress = AlertSensorCursor.parse(sensors.cursor).checks["alert_probe:fixity"]
    assert progress.seen == [] and progress.after is not None

    outcome["failing"] = []
    materialize([probe, fixity], instance=vault.instance, tags=ranged)
    sensors.tick()
    recoveries = webhook.events("recovery")
    assert sorted(b["partition"] for b in recoveries) == ["2025-03-04..2025-03-06", "2025-03-05"]
    assert all(row["state"] == "resolved" for row in alert_store(vault).rows())


@SEAWEED_ONLY
def test_a_check_still_running_when_newer_ones_finish_is_not_skipped(vault: Vault, webhook: WebhookReceiver) -> None:
    """Rows are created when a check is planned, so a later-finishing check has a lower id."""
    vault.configure(VAULT_ALERT_WEBHOOK_URL=webhook.url)
    outcome = {"failing": ["late.pdf"]}
    probe, fixity = probe_definitions(outcome)
    sensors = CheckSensorHarness(vault, [fixity.check_key])
    asset_key, check_name = AssetKey("alert_probe"), "fixity"
    slow = vault.instance.add_run(DagsterRun(
        job_name="slow_checks", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED,
        tags={"dagster/partition": "2025-03-01"}))
    vault.instance.report_dagster_event(DagsterEvent(
        DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED.value, job_name="slow_checks",
        event_specific_data=AssetCheckEvaluationPlanned(asset_key=asset_key, check_name=check_name)), slow.run_id)
    materialize([probe, fixity], partition_key=DAY, instance=vault.instance)  # planned later, finished first
    sensors.tick()
    assert [b["partition"] for b in webhook.bodies] == [DAY]

    vault.instance.report_dagster_event(DagsterEvent(
        DagsterEventType.ASSET_CHECK_EVALUATION.value, job_name="slow_checks",
        event_specific_data=AssetCheckEvaluation(
            asset_key=asset_key, check_name=check_name, passed=False, severity=AssetCheckSeverity.ERROR,
            metadata={"failing_keys": MetadataValue.md("| key |\n|---|\n| `slow/1.pdf` |\n| `slow/2.pdf` |")})),
        slow.run_id)
    sensors.tick()
    sensors.tick()
    assert [b["partition"] for b in webhook.bodies] == [DAY, "2025-03-01"]  # partition from the run's tag
    assert webhook.bodies[1]["failing_keys"] == ["slow/1.pdf", "slow/2.pdf"]  # read from a markdown table


@SEAWEED_ONLY
def test_webhook_down_never_raises_and_the_alert_is_delivered_later_exactly_once(
    vault: Vault, webhook: WebhookReceiver, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    vault.configure(VAULT_ALERT_WEBHOOK_URL=f"http://127.0.0.1:{closed_port()}/services/{TOKEN}")
    probe, fixity = probe_definitions({"failing": ["k.pdf"]})
    sensors = CheckSensorHarness(vault, [fixity.check_key])
    materialize([probe, fixity], partition_key=DAY, instance=vault.instance)
    key = f"check:alert_probe:fixity:{DAY}"

    started = time.monotonic()
    result = sensors.tick()  # connection refused: no exception, the alert stays pending
    refused_seconds = time.monotonic() - started
    assert "1 failed" in (result.skip_reason.skip_message or "")
    row = alert_store(vault).get(key)
    assert row["delivery_state"] == "pending" and row["delivery_attempts"] == 1
    assert "Connection refused" in row["last_delivery_error"]
    assert len(alert_lines(caplog)) == 1, "the log line is written once, when the alert opens"

    webhook.status = 500
    vault.configure(VAULT_ALERT_WEBHOOK_URL=webhook.url)
    sensors.tick()
    assert webhook.refused == 3 and webhook.bodies == []  # three quick attempts, then wait for the next tick
    assert alert_store(vault).get(key)["last_delivery_error"] == "HTTP 500"

    webhook.status = 200
    sensors.tick()
    sensors.tick()
    assert len(webhook.bodies) == 1 and webhook.bodies[0]["key"] == key
    row = alert_store(vault).get(key)
    assert row["delivery_state"] == "delivered" and row["delivery_attempts"] == 3
    assert len(alert_lines(caplog)) == 1
    assert_url_never_logged(caplog, capfd, vault)
    print(f"tick against a closed port (3 attempts, backoff): {refused_seconds:.2f} s")


@SEAWEED_ONLY
def test_failed_run_alerts_once_per_failure_and_a_successful_run_recovers_it(
    vault: Vault, webhook: WebhookReceiver, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    vault.configure(VAULT_ALERT_WEBHOOK_URL=webhook.url)
    for i in range(3):
        vault.put(f"alerting/{i}.pdf", b"%PDF-1.7 alert " + bytes([i]), {"document-type": "invoice"})
    vault.run_sensor()
    good_endpoint = vault.env["OVH_S3_ENDPOINT"]
    vault.configure(OVH_S3_ENDPOINT="http://127.0.0.1:9")  # nothing listens on the discard port
    day = today_key()

    def on_failure(result: Any) -> None:
        context = build_run_status_sensor_context(
            sensor_name="run_failure_alert_sensor", dagster_event=result.get_run_failure_event(),
            dagster_instance=vault.instance, dagster_run=result.dagster_run, resources=vault.resources)
        vault.defs.resolve_sensor_def("run_failure_alert_sensor")(context)

    def on_success(result: Any) -> None:
        context = build_run_status_sensor_context(
            sensor_name="run_recovery_alert_sensor", dagster_event=result.get_run_success_event(),
            dagster_instance=vault.instance, dagster_run=result.dagster_run, resources=vault.resources)
        vault.defs.resolve_sensor_def("run_recovery_alert_sensor")(context)

    failed = vault.run_partition(day, sweep=False)
    assert not failed.success
    on_failure(failed)
    on_failure(failed)  # the same event twice (a re-evaluated tick): still one alert
    assert len(webhook.bodies) == 1
    alert = webhook.bodies[0]
    assert alert["key"] == f"run:replication_job:{day}" and alert["kind"] == "run" and alert["event"] == "alert"
    assert alert["job"] == "replication_job" and alert["run_id"] == failed.run_id and alert["days"] == [day]
    assert alert["failing_keys"] == [f"alerting/{i}.pdf" for i in range(3)]
    assert "3 object(s) still failed" in alert["details"]["error"] and "cold_copies" in alert["details"]["failed_steps"]
    assert "ALERT" in alert["text"] and "replication_job" in alert["text"]

    again = vault.run_partition(day, sweep=False)  # the sensor asks again an hour later: same failure
    on_failure(again)
    assert len(webhook.bodies) == 1
    assert alert_store(vault).get(alert["key"])["occurrences"] == 2

    vault.configure(OVH_S3_ENDPOINT=good_endpoint)
    fixed = vault.run_partition(day, sweep=False)
    assert fixed.success
    on_success(fixed)
    on_success(fixed)
    assert [b["event"] for b in webhook.bodies] == ["alert", "recovery"]
    recovery = webhook.bodies[1]
    assert recovery["key"] == alert["key"] and recovery["run_id"] == fixed.run_id
    assert recovery["details"]["occurrences"] == 2 and "RESOLVED" in recovery["text"]

    on_failure(failed)  # a lagging failure sensor delivering the old failure after the fix: ignored
    assert len(webhook.bodies) == 2
    assert [line["event"] for line in alert_lines(caplog)] == ["alert", "recovery"]
    assert_url_never_logged(caplog, capfd, vault)


@SEAWEED_ONLY
def test_webhook_url_is_wired_as_an_env_var_and_checked_without_echoing_it(
    vault: Vault, monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert vault.resources["alerts"].webhook_url is None  # no variable: log line only
    vault.configure(VAULT_ALERT_WEBHOOK_URL="https://hooks.example.invalid/services/" + TOKEN)
    resource = vault.resources["alerts"]
    assert isinstance(resource.webhook_url, EnvVar) and resource.webhook_url.env_var_name == "VAULT_ALERT_WEBHOOK_URL"
    monkeypatch.setenv("VAULT_ALERT_WEBHOOK_URL", "file:///etc/" + TOKEN)
    with pytest.raises(ConfigurationError) as excinfo:
        alerts_resource_from_env(timeout_seconds=1, delivery_budget_seconds=1)
    assert "VAULT_ALERT_WEBHOOK_URL" in str(excinfo.value) and TOKEN not in str(excinfo.value)
