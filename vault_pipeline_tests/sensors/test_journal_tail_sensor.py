"""The secondary site's continuous reconstruction: journal_tail_sensor requests incremental rebuilds for
new segments, records the lag, and alerts once when it passes the threshold (then recovers)."""

from __future__ import annotations

import json
import time

import pytest
from dagster import DefaultSensorStatus, SensorResult, build_sensor_context

from vault_pipeline_tests.alerting.conftest import WebhookReceiver, webhook  # noqa: F401  (fixture)
from vault_pipeline_tests.conftest import Vault


def tick(vault: Vault, cursor: str | None = None) -> SensorResult:
    sensor = vault.defs.resolve_sensor_def("journal_tail_sensor")
    result = sensor(build_sensor_context(instance=vault.instance, cursor=cursor, resources=vault.resources))
    assert isinstance(result, SensorResult)
    return result


def run_requested(vault: Vault, result: SensorResult):
    job = vault.defs.resolve_job_def("rebuild_tracking_db")
    (request,) = result.run_requests
    return job.execute_in_process(run_config=request.run_config, instance=vault.instance, tags=request.tags)


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_new_segments_start_incremental_rebuilds_and_the_lag_alerts_once(
        vault: Vault, secondary_dsn: str, webhook: WebhookReceiver) -> None:  # noqa: F811
    sensor = vault.defs.resolve_sensor_def("journal_tail_sensor")
    assert sensor.default_status == DefaultSensorStatus.STOPPED  # the primary site never replays its own journal
    unconfigured = sensor(build_sensor_context(instance=vault.instance, resources=vault.resources))
    assert "VAULT_REBUILD_DATABASE_URL is not set" in unconfigured.skip_message

    vault.configure(VAULT_REBUILD_DATABASE_URL=secondary_dsn, VAULT_REBUILD_LAG_ALERT_SECONDS="2",
                    VAULT_ALERT_WEBHOOK_URL=webhook.url)
    for i in range(3):
        vault.put(f"tail/{i}.pdf", b"x" * (i + 1), {"document-type": "payslip"})
    assert all(r.success for r in vault.sensor_and_runs())

    first = tick(vault)
    assert first.run_requests and first.run_requests[0].run_config["ops"]["rebuilt_tracking_db"]["config"] == {
        "mode": "incremental"}
    (observation,) = first.asset_events
    assert observation.metadata["pending_segments"].value == 1
    assert webhook.events() == []  # lag under the threshold

    time.sleep(2.5)  # the segment waits longer than the threshold: one alert, however many ticks see it
    late = tick(vault)
    tick(vault)
    alerts = webhook.events("alert")
    assert len(alerts) == 1
    assert "behind the cold site's journal" in alerts[0]["text"] and alerts[0]["kind"] == "lag"
    assert alerts[0]["details"]["pending_segments"] == 1
    assert late.run_requests[0].run_key == first.run_requests[0].run_key  # same newest segment: deduplicated

    run = run_requested(vault, late)
    assert run.success
    metadata = run.asset_materializations_for_node("rebuilt_tracking_db")[0].metadata
    assert metadata["entries_copy"].value == 3 and metadata["mode"].value == "incremental"
    caught_up = tick(vault)
    assert not caught_up.run_requests
    assert json.loads(caught_up.cursor)["pending_segments"] == 0
    assert caught_up.asset_events[0].metadata["lag_seconds"].value == 0
    recoveries = webhook.events("recovery")
    assert len(recoveries) == 1 and "back under its threshold" in recoveries[0]["text"]
    assert len(webhook.events("alert")) == 1

    vault.put("tail/late.pdf", b"later", {"document-type": "invoice"})
    assert all(r.success for r in vault.sensor_and_runs())
    more = tick(vault)
    assert more.run_requests and more.run_requests[0].run_key != late.run_requests[0].run_key
    assert run_requested(vault, more).success
    assert vault.store.rows(vault.hot_bucket)  # the primary is untouched
