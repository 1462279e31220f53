"""The integrity story end to end: tampering on the cold site -> the checks fail -> exactly one webhook
alert per failing check, naming the day and the key -> repair -> exactly one recovery notice each."""

from __future__ import annotations

from typing import Any

from dagster import SensorResult, build_sensor_context

from vault_pipeline_tests.alerting.conftest import WebhookReceiver
from vault_pipeline_tests.checks.test_tampering import TAMPERED, run_checks, tamper
from vault_pipeline_tests.conftest import Vault, today_key


class Ticker:
    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self.sensor = vault.defs.resolve_sensor_def("check_alert_sensor")
        self.cursor: str | None = None

    def tick(self) -> None:
        context = build_sensor_context(instance=self.vault.instance, cursor=self.cursor,
                                       resources=self.vault.resources)
        result = self.sensor(context)
        if isinstance(result, SensorResult):
            self.cursor = result.cursor


def test_tampering_alerts_once_per_failing_check_and_recovers(vault: Vault, webhook: WebhookReceiver) -> None:
    vault.configure(VAULT_ALERT_WEBHOOK_URL=webhook.url)
    for name in ("bytes", "marker", "short", "class"):  # the tampered objects of checks/test_tampering.py
        vault.put(f"t/{name}.pdf", f"original {name}".encode(), {"document-type": "contract"})
    assert all(r.success for r in vault.sensor_and_runs())
    ticker = Ticker(vault)
    ticker.tick()
    assert webhook.bodies == []  # the replication run's checks passed: nothing to say

    repair = tamper(vault, "t/", tags=False)

    run_checks(vault)
    ticker.tick()
    ticker.tick()
    run_checks(vault)  # still failing on the next audit: no new alert
    ticker.tick()
    alerts: dict[str, dict[str, Any]] = {b["check"]: b for b in webhook.events("alert")}
    expected = {check: f"t/{name}.pdf" for check, name in TAMPERED.items() if check != "tags"}
    assert len(webhook.events("alert")) == len(expected)  # exactly one per distinct failure
    for check, key in expected.items():
        alert = alerts[check]
        assert alert["failing_keys"] == [key] and alert["partition"] == today_key()
        assert key in alert["text"] and alert["severity"] == "ERROR"

    repair()
    assert all(e.passed for e in run_checks(vault).values())
    ticker.tick()
    ticker.tick()
    recoveries = webhook.events("recovery")
    assert sorted(r["check"] for r in recoveries) == sorted(expected)
    assert len(webhook.bodies) == 2 * len(expected)
