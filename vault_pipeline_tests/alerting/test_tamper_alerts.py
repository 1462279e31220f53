"""The integrity story end to end: tampering on the cold site -> the checks fail -> exactly one webhook
alert per failing check, naming the day and the key -> repair -> exactly one recovery notice each."""

from __future__ import annotations

from typing import Any

import pytest
from dagster import SensorResult, build_sensor_context

from vault_pipeline.alerting import AlertStore
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


def forge(vault: Vault, key: str) -> None:
    """A new cold version of `key` with other bytes: the checksum check fails for it, and only it."""
    vault.cold.put_object(Bucket=vault.cold_bucket, Key=key, Body=b"forged " + key.encode(),
                          ChecksumAlgorithm="SHA256")


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_new_tampering_on_a_failing_day_is_announced_once_naming_only_the_new_keys(
    vault: Vault, webhook: WebhookReceiver,
) -> None:
    """Issue 12, item 9: new damage is never hidden behind old damage, even beyond the 20 keys shown."""
    vault.configure(VAULT_ALERT_WEBHOOK_URL=webhook.url)
    keys = [f"n/{i:02}.pdf" for i in range(24)]  # the checks list failing objects by key
    for key in keys:
        vault.put(key, f"original {key}".encode(), {"document-type": "contract"})
    assert all(r.success for r in vault.sensor_and_runs())
    ticker = Ticker(vault)
    ticker.tick()
    assert webhook.bodies == []

    def checksum_notices() -> list[dict[str, Any]]:
        return [b for b in webhook.bodies if b["check"] == "checksum"]

    forge(vault, keys[0])
    run_checks(vault)
    ticker.tick()
    (first,) = checksum_notices()
    assert first["failing_keys"] == [keys[0]] and first["new_keys"] == [keys[0]]
    run_checks(vault)  # the same damage again: nothing
    ticker.tick()
    assert len(checksum_notices()) == 1

    forge(vault, keys[1])  # a second tampered copy on the day that already fails
    run_checks(vault)
    ticker.tick()
    assert len(checksum_notices()) == 2
    second = checksum_notices()[1]
    assert second["event"] == "alert" and second["key"] == first["key"] and second["partition"] == today_key()
    assert second["new_keys"] == [keys[1]] and second["failing_keys"] == keys[:2]
    assert second["details"]["extension"] == 1 and second["details"]["new_objects_failing"] == 1
    assert keys[1] in second["text"] and keys[0] not in second["text"]
    run_checks(vault)  # re-evaluated with the same keys: nothing more
    ticker.tick()
    assert len(checksum_notices()) == 2

    for key in keys[2:22]:  # 22 failing now: the check shows the first 20
        forge(vault, key)
    run_checks(vault)
    ticker.tick()
    third = checksum_notices()[2]
    assert third["failing_keys"] == keys[:20] and third["details"]["objects_failing"] == 22
    assert third["new_keys"] == keys[2:20] and third["details"]["new_keys_unnamed"] == 2

    forge(vault, keys[23])  # sorts after the 20 shown: only the check's key hashes tell it apart
    run_checks(vault)
    ticker.tick()
    fourth = checksum_notices()[3]
    assert fourth["failing_keys"] == keys[:20] and fourth["new_keys"] == []
    assert fourth["details"]["new_objects_failing"] == 1 and fourth["details"]["objects_failing"] == 23
    run_checks(vault)
    ticker.tick()
    assert len(checksum_notices()) == 4

    row = AlertStore(vault.store.pool).get(first["key"])
    assert row["state"] == "open" and row["extensions"] == 3 and row["extended_at"] is not None
    assert row["seen_keys"] == keys[:20] and len(row["seen_key_hashes"]) == 23
    assert row["delivery_state"] == "delivered"
