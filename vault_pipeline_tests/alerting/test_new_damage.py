"""New damage is never hidden behind old damage (issue 12, item 9), on the real alert table.

An open check alert stays one alert while the same objects keep failing, but a failure naming objects
its episode has not seen sends one more notification naming only those, also when they lie beyond the
check's shown list (hashes) or only its count says so; keys that disappear never re-alert; a notification
still undelivered is replaced by one that says both, so delivery stays at least once and deduplicated.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from importlib import resources

import pytest

from vault_pipeline.alerting import Alert, AlertDispatcher, AlertStore, WebhookNotifier
from vault_pipeline.alerting.payload import key_hash
from vault_pipeline.alerting.state import FailingSet, new_damage
from vault_pipeline.replication.tracking import TrackingStore
from vault_pipeline.resources.tracking_db import shared_store
from vault_pipeline_tests.alerting.conftest import WebhookReceiver, raise_concurrently

T0 = dt.datetime(2026, 2, 3, 8, 0, tzinfo=dt.UTC)
DAY = "2026-02-02"
KEY = f"check:cold_copies:checksum:{DAY}"


@pytest.fixture
def tracking(tracking_dsn: str) -> Iterator[TrackingStore]:
    yield shared_store(tracking_dsn)  # migrated: 012_alert_keys.sql applied


def failing(*keys: str, run: str, total: int | None = None, hashed: tuple[str, ...] = (), shown: int = 20,
            kind: str = "check") -> Alert:
    """A failed evaluation naming the first `shown` of `keys`, hashing `hashed` too, counting `total`."""
    return Alert(kind=kind, subject="cold_copies:checksum", partition=DAY, asset="cold_copies", check="checksum",
                 run_id=run, failing_keys=keys[:shown], days=(DAY,),
                 details={"objects_failing": len(keys) if total is None else total},
                 key_hashes=tuple(key_hash(k) for k in (*keys, *hashed)))


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def dispatcher_for(tracking: TrackingStore, url: str | None) -> AlertDispatcher:
    return AlertDispatcher(AlertStore(tracking.pool), WebhookNotifier(url, backoff_seconds=0))


def test_only_keys_not_seen_in_the_episode_send_a_notification(
    tracking: TrackingStore, webhook: WebhookReceiver,
) -> None:
    dispatcher = dispatcher_for(tracking, webhook.url)
    store = dispatcher.store
    assert dispatcher.raise_alert(failing("a.pdf", run="r1"), observed_at=at(0)).transition == "open"
    assert dispatcher.raise_alert(failing("a.pdf", run="r2"), observed_at=at(10)) is None  # same damage
    dispatcher.deliver_pending()
    assert [b["new_keys"] for b in webhook.bodies] == [["a.pdf"]]

    extension = dispatcher.raise_alert(failing("a.pdf", "b.pdf", run="r3"), observed_at=at(20))
    assert extension is not None and extension.transition == "extend"
    assert dispatcher.raise_alert(failing("a.pdf", "b.pdf", run="r4"), observed_at=at(30)) is None  # re-evaluated
    assert dispatcher.raise_alert(failing("b.pdf", run="r5"), observed_at=at(40)) is None  # a.pdf repaired
    assert dispatcher.raise_alert(failing("a.pdf", "b.pdf", run="r6"), observed_at=at(50)) is None  # a.pdf again
    assert dispatcher.deliver_pending().delivered == 1
    assert len(webhook.bodies) == 2
    new = webhook.bodies[1]
    assert new["event"] == "alert" and new["key"] == KEY and new["run_id"] == "r3"
    assert new["new_keys"] == ["b.pdf"] and new["failing_keys"] == ["a.pdf", "b.pdf"]
    assert new["details"]["extension"] == 1 and new["details"]["new_objects_failing"] == 1
    assert "NEW failing" in new["text"] and "b.pdf" in new["text"].split("New:")[1]
    assert "a.pdf" not in new["text"].split("New:")[1]

    row = store.get(KEY)
    assert row["state"] == "open" and row["occurrences"] == 6 and row["extensions"] == 1
    assert row["extended_at"] == at(20) and row["seen_keys"] == ["a.pdf", "b.pdf"]
    assert sorted(row["seen_key_hashes"]) == sorted([key_hash("a.pdf"), key_hash("b.pdf")])
    assert row["delivery_state"] == "delivered" and row["peak_failing"] == 2

    # Recovered, then failing again: a fresh alert (a new episode) that names its keys as today.
    assert dispatcher.resolve(KEY, observed_at=at(60), run_id="fix") is not None
    dispatcher.deliver_pending()
    again = dispatcher.raise_alert(failing("b.pdf", run="r7"), observed_at=at(70))
    assert again is not None and again.transition == "open"
    dispatcher.deliver_pending()
    assert [b["event"] for b in webhook.bodies] == ["alert", "alert", "recovery", "alert"]
    assert webhook.bodies[2]["new_keys"] == [] and "new_objects_failing" not in webhook.bodies[2]["details"]
    assert webhook.bodies[3]["new_keys"] == ["b.pdf"] and "extension" not in webhook.bodies[3]["details"]
    row = store.get(KEY)
    assert row["episodes"] == 2 and row["extensions"] == 0 and row["extended_at"] is None
    assert row["seen_keys"] == ["b.pdf"] and row["occurrences"] == 1


def test_a_new_object_beyond_the_shown_keys_is_found_by_its_hash(
    tracking: TrackingStore, webhook: WebhookReceiver,
) -> None:
    dispatcher = dispatcher_for(tracking, webhook.url)
    keys = [f"k{i:02}.pdf" for i in range(25)]
    dispatcher.raise_alert(failing(*keys[:22], run="r1"), observed_at=at(0))  # shows k00..k19, hashes all 22
    dispatcher.deliver_pending()
    # k24 sorts after the 20 shown: the list is the same, the count and the hashes are not.
    extension = dispatcher.raise_alert(failing(*keys[:22], keys[24], run="r2"), observed_at=at(10))
    assert extension is not None and extension.payload["failing_keys"] == keys[:20]
    dispatcher.deliver_pending()
    new = webhook.bodies[1]
    assert new["new_keys"] == [] and new["details"]["new_keys_unnamed"] == 1
    assert new["details"]["new_objects_failing"] == 1 and new["details"]["objects_failing"] == 23
    assert "1 new failing object(s) not named here" in new["text"]
    # One repaired, another damaged, both beyond the list: the count does not move, the hashes do.
    assert dispatcher.raise_alert(failing(*keys[:21], keys[23], keys[24], run="r3"), observed_at=at(20)) is not None
    dispatcher.deliver_pending()
    # A new object that sorts first enters the shown list: it is named, the one pushed out is not new.
    extension = dispatcher.raise_alert(failing("a-first.pdf", *keys, run="r4"), observed_at=at(30))
    assert extension is not None and extension.payload["new_keys"] == ["a-first.pdf"]
    assert extension.payload["details"]["new_objects_failing"] == 2  # k21 was hashed before: k22 is new
    assert dispatcher.raise_alert(failing("a-first.pdf", *keys, run="r5"), observed_at=at(40)) is None


def test_without_hashes_a_count_above_the_episode_peak_is_new_damage(tracking: TrackingStore) -> None:
    dispatcher = dispatcher_for(tracking, None)  # no webhook: notifications are logged only ("skipped")
    shown = tuple(f"s{i:02}.pdf" for i in range(20))

    def count_only(total: int, run: str) -> Alert:
        return Alert(kind="check", subject="cold_copies:checksum", partition=DAY, run_id=run, failing_keys=shown,
                     details={"objects_failing": total})

    assert dispatcher.raise_alert(count_only(30, "r1"), observed_at=at(0)) is not None
    assert dispatcher.raise_alert(count_only(30, "r2"), observed_at=at(1)) is None
    extension = dispatcher.raise_alert(count_only(31, "r3"), observed_at=at(2))
    assert extension is not None and extension.payload["details"]["new_keys_unnamed"] == 1
    assert dispatcher.raise_alert(count_only(29, "r4"), observed_at=at(3)) is None  # fewer: no alert
    assert dispatcher.raise_alert(count_only(31, "r5"), observed_at=at(4)) is None  # not above the peak
    assert dispatcher.raise_alert(count_only(33, "r6"), observed_at=at(5)).payload["details"]["new_keys_unnamed"] == 2
    row = dispatcher.store.get(KEY)
    assert row["peak_failing"] == 33 and row["extensions"] == 2 and row["delivery_state"] == "skipped"


def test_an_undelivered_notification_is_replaced_by_one_that_says_both(
    tracking: TrackingStore, webhook: WebhookReceiver,
) -> None:
    dispatcher = dispatcher_for(tracking, webhook.url)
    webhook.status = 503
    dispatcher.raise_alert(failing("a.pdf", run="r1"), observed_at=at(0))
    assert dispatcher.deliver_pending().failed == 1
    dispatcher.raise_alert(failing("a.pdf", "b.pdf", run="r2"), observed_at=at(10))
    webhook.status = 200
    assert dispatcher.deliver_pending().delivered == 1
    (opening,) = webhook.bodies  # one alert, naming both: nothing lost, nothing twice
    assert opening["new_keys"] == ["a.pdf", "b.pdf"] and opening["failing_keys"] == ["a.pdf", "b.pdf"]
    assert "extension" not in opening["details"]

    dispatcher.raise_alert(failing("a.pdf", "b.pdf", "c.pdf", run="r3"), observed_at=at(20))
    webhook.status = 503
    assert dispatcher.deliver_pending().failed == 1
    dispatcher.raise_alert(failing("a.pdf", "b.pdf", "c.pdf", "d.pdf", run="r4"), observed_at=at(30))
    webhook.status = 200
    assert dispatcher.deliver_pending().delivered == 1
    assert dispatcher.deliver_pending().delivered == 0
    assert [b["new_keys"] for b in webhook.bodies] == [["a.pdf", "b.pdf"], ["c.pdf", "d.pdf"]]
    assert webhook.bodies[1]["details"]["extension"] == 1  # the first notice of new damage after the alert
    assert dispatcher.store.get(KEY)["extensions"] == 3  # three evaluations found new objects


def test_concurrent_sensors_extend_once(tracking: TrackingStore, webhook: WebhookReceiver) -> None:
    dispatchers = [dispatcher_for(tracking, webhook.url) for _ in range(8)]
    dispatchers[0].raise_alert(failing("a.pdf", run="r0"), observed_at=at(0))
    dispatchers[0].deliver_pending()
    extended = raise_concurrently(dispatchers, lambda i: failing("a.pdf", "b.pdf", run=f"r{i + 1}"), at(10))
    assert len(extended) == 1
    assert [b["new_keys"] for b in webhook.bodies] == [["a.pdf"], ["b.pdf"]]


def test_run_alerts_are_not_extended(tracking: TrackingStore) -> None:
    dispatcher = dispatcher_for(tracking, None)
    assert dispatcher.raise_alert(failing("a.pdf", run="r1", kind="run"), observed_at=at(0)) is not None
    assert dispatcher.raise_alert(failing("a.pdf", "b.pdf", run="r2", kind="run"), observed_at=at(1)) is None


def test_new_damage_rules() -> None:
    row = {"seen_key_hashes": [key_hash("a")], "peak_failing": 1}
    assert not new_damage(row, FailingSet(("a",), frozenset({key_hash("a")}), 1))
    assert new_damage(row, FailingSet(("a", "b"), frozenset({key_hash("a"), key_hash("b")}), 2)).keys == ("b",)
    assert not new_damage(row, FailingSet((), frozenset(), 0))
    legacy = {"seen_key_hashes": [], "peak_failing": None}  # nothing known: every key is new
    assert new_damage(legacy, FailingSet(("a",), frozenset({key_hash("a")}), 5)).keys == ("a",)


def test_migration_012_remembers_the_keys_of_alerts_already_open(tracking: TrackingStore) -> None:
    """An alert open before the upgrade must not announce its own keys again as new damage."""
    dispatcher = dispatcher_for(tracking, None)
    dispatcher.raise_alert(failing("é/ü.pdf", "b.pdf", run="r1"), observed_at=at(0))
    with tracking.pool.connection() as conn:  # as the row was before 012: nothing remembered
        conn.execute("UPDATE vault_secure.alerts SET seen_keys = '{}', seen_key_hashes = '{}', peak_failing = NULL")
        conn.execute(resources.files("vault_pipeline").joinpath("sql", "012_alert_keys.sql").read_text("utf-8"))
    row = dispatcher.store.get(KEY)
    assert sorted(row["seen_keys"]) == sorted(["é/ü.pdf", "b.pdf"]) and row["peak_failing"] == 2
    assert sorted(row["seen_key_hashes"]) == sorted([key_hash("é/ü.pdf"), key_hash("b.pdf")])  # SQL == Python
    assert dispatcher.raise_alert(failing("é/ü.pdf", "b.pdf", run="r2"), observed_at=at(1)) is None


def test_an_undelivered_opening_alert_names_what_fails_now_first(tracking: TrackingStore) -> None:
    """Replaced while undelivered, an opening alert keeps at most 20 keys: the new damage is among them."""
    dispatcher = AlertDispatcher(AlertStore(tracking.pool), WebhookNotifier("http://127.0.0.1:9/x"))  # never sent
    keys = [f"k{i:02}.pdf" for i in range(20)]
    dispatcher.raise_alert(failing(*keys, run="r1"), observed_at=at(0))
    merged = dispatcher.raise_alert(failing("a-new.pdf", *keys, run="r2"), observed_at=at(10))
    assert merged is not None and merged.payload["new_keys"][0] == "a-new.pdf"
    assert len(merged.payload["failing_keys"]) == 20 and merged.payload["details"]["objects_failing"] == 21
    row = dispatcher.store.get(KEY)
    assert row["delivery_state"] == "pending" and row["last_payload"] == merged.payload
