"""The alert table on real PostgreSQL (atomic transitions, delivery claims) and the payload helpers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from importlib import resources

import pytest

from vault_pipeline.alerting import Alert, AlertDispatcher, AlertStore, WebhookNotifier
from vault_pipeline.alerting.payload import day_list, key_list, partition_label
from vault_pipeline.replication.tracking import TrackingStore
from vault_pipeline.resources.tracking_db import shared_store
from vault_pipeline_tests.alerting.conftest import TOKEN, WebhookReceiver, closed_port, raise_concurrently

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def tracking(tracking_dsn: str) -> Iterator[TrackingStore]:
    yield shared_store(tracking_dsn)  # migrated: 002_alerts.sql applied


def failure(partition: str = "2026-01-04", run_id: str = "run-1") -> Alert:
    return Alert(kind="check", subject="cold_copies:checksum", partition=partition, asset="cold_copies",
                 check="checksum", run_id=run_id, failing_keys=("a.pdf",), days=(partition,))


def test_migration_is_idempotent(tracking: TrackingStore) -> None:
    assert tracking.migrate() == []
    script = resources.files("vault_pipeline").joinpath("sql", "002_alerts.sql").read_text("utf-8")
    with tracking.pool.connection() as conn:
        conn.execute(script)  # applying it a second time changes nothing and raises nothing


def test_alerts_table_is_admin_only_under_row_level_security(tracking: TrackingStore) -> None:
    with tracking.pool.connection() as conn:
        (enabled,) = conn.execute("SELECT relrowsecurity FROM pg_class WHERE oid = 'vault_secure.alerts'::regclass"
                                  ).fetchone()
        policies = conn.execute("SELECT roles::text FROM pg_policies WHERE schemaname = 'vault_secure'"
                                " AND tablename = 'alerts'").fetchall()
    assert enabled and policies == [("{vault_admin}",)]


def test_concurrent_openers_send_once_and_concurrent_senders_deliver_once(
    tracking: TrackingStore, webhook: WebhookReceiver,
) -> None:
    """Eight processes' worth of threads race to open the same failure and to deliver it."""
    dispatchers = [AlertDispatcher(AlertStore(tracking.pool), WebhookNotifier(webhook.url)) for _ in range(8)]
    opened = raise_concurrently(dispatchers, lambda i: failure(run_id=f"run-{i}"), T0)
    assert len(opened) == 1
    assert len(webhook.bodies) == 1
    row = AlertStore(tracking.pool).get("check:cold_copies:checksum:2026-01-04")
    assert row["state"] == "open" and row["occurrences"] == 8 and row["delivery_state"] == "delivered"


def test_ordering_guard_and_undelivered_alert_reported_by_its_recovery(
    tracking: TrackingStore, webhook: WebhookReceiver,
) -> None:
    store = AlertStore(tracking.pool)
    dispatcher = AlertDispatcher(store, WebhookNotifier(webhook.url, backoff_seconds=0))
    key = failure().key
    webhook.status = 503
    assert dispatcher.raise_alert(failure(), observed_at=T0) is not None
    assert dispatcher.deliver_pending().failed == 1
    # A success older than the failure (a lagging sensor) does not resolve it...
    assert dispatcher.resolve(key, observed_at=T0 - dt.timedelta(minutes=5), run_id="old") is None
    # ...a newer one does, while the alert itself was never delivered: the recovery says what failed.
    assert dispatcher.resolve(key, observed_at=T0 + dt.timedelta(hours=1), run_id="fix") is not None
    # A failure older than the recovery arriving late does not reopen it.
    assert dispatcher.raise_alert(failure(run_id="late"), observed_at=T0 + dt.timedelta(minutes=30)) is None
    webhook.status = 200
    report = dispatcher.deliver_pending()
    assert (report.delivered, report.failed) == (1, 0)
    (recovery,) = webhook.bodies
    assert recovery["event"] == "recovery" and recovery["details"]["alert_delivered"] is False
    assert "could not be delivered" in recovery["text"] and "a.pdf" in recovery["text"]
    # A new failure later is a new episode: one new alert.
    assert dispatcher.raise_alert(failure(run_id="again"), observed_at=T0 + dt.timedelta(days=1)) is not None
    dispatcher.deliver_pending()
    assert [b["event"] for b in webhook.bodies] == ["recovery", "alert"]
    assert store.get(key)["episodes"] == 2


def test_a_range_success_resolves_the_days_it_covers_only(tracking: TrackingStore) -> None:
    dispatcher = AlertDispatcher(AlertStore(tracking.pool), WebhookNotifier(None))
    for partition in ("2026-01-03", "2026-01-04", "2026-01-09", "2026-01-01..2026-01-05"):
        dispatcher.raise_alert(failure(partition), observed_at=T0)
    single = dispatcher.resolve_covered("check", "cold_copies:checksum", "2026-01-03", observed_at=T0, run_id="r")
    assert [n.payload["partition"] for n in single] == ["2026-01-03"]  # a day never clears a range
    covered = dispatcher.resolve_covered("check", "cold_copies:checksum", "2026-01-01..2026-01-06",
                                         observed_at=T0, run_id="r")
    assert sorted(n.payload["partition"] for n in covered) == ["2026-01-01..2026-01-05", "2026-01-04"]
    open_rows = [r["partition_key"] for r in AlertStore(tracking.pool).rows() if r["state"] == "open"]
    assert open_rows == ["2026-01-09"]
    assert all(r["delivery_state"] == "skipped" for r in AlertStore(tracking.pool).rows())  # no webhook: log only


def test_metadata_shapes_and_partition_labels() -> None:
    assert key_list(["a", "b"]) == ("a", "b")
    assert key_list('["a", "b"]') == ("a", "b")
    assert key_list({"keys": ["a"]}) == ("a",)
    assert key_list("- `x/1.pdf`\n- `x/2.pdf`") == ("x/1.pdf", "x/2.pdf")
    assert key_list("| day | key |\n|---|---|\n| 2026-01-01 | `k.pdf` |") == ("k.pdf",)
    assert key_list("one.pdf\ntwo.pdf") == ("one.pdf", "two.pdf")
    assert key_list("None.") == () and key_list(42) == () and key_list(None) == ()
    assert day_list("2026-01-02", ["2026-01-01", "nope", "2026-01-02"]) == ("2026-01-01", "2026-01-02")
    assert partition_label("2026-01-01") == "2026-01-01"
    assert partition_label(None, "2026-01-01", "2026-01-03") == "2026-01-01..2026-01-03"
    assert partition_label(None) == "all"


def test_notifier_never_raises_and_never_shows_the_url() -> None:
    with pytest.raises(ValueError) as excinfo:
        WebhookNotifier("file:///tmp/" + TOKEN)
    assert TOKEN not in str(excinfo.value)
    notifier = WebhookNotifier(f"http://127.0.0.1:{closed_port()}/services/{TOKEN}", timeout=2, attempts=2,
                               backoff_seconds=0)
    result = notifier.post({"text": "hello"})
    assert not result.delivered and result.attempts == 2 and result.error
    assert TOKEN not in result.error and TOKEN not in repr(notifier)
    assert notifier.redact(f"boom at http://x/services/{TOKEN}?a=1") == "boom at http://x<webhook>?a=1"
    assert not WebhookNotifier(None).post({"text": "x"}).delivered
