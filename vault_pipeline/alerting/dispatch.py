"""The alerting workflow the sensors call: record a transition, log it once, deliver what is pending.

Order matters: the transition is committed (and logged) before any POST, so a webhook that is down or
slow never loses an alert; the POST happens afterwards from the pending queue, within a time budget,
so a sensor tick stays short whatever the webhook does.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from vault_pipeline.alerting.notify import WebhookNotifier, log_alert
from vault_pipeline.alerting.payload import (
    MAX_KEYS,
    Alert,
    alert_key,
    alert_payload,
    extension_payload,
    partition_bounds,
    recovery_payload,
)
from vault_pipeline.alerting.state import AlertStore, FailingSet, NewDamage, Notification, Row

log = logging.getLogger("vault_pipeline.alerting")


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    superseded: int = 0  # a newer transition replaced it while it was being sent; that one stays pending
    errors: list[str] = field(default_factory=list)  # safe to show: never hold the URL

    def summary(self) -> str:
        parts = [f"{self.delivered} delivered"]
        if self.failed:
            parts.append(f"{self.failed} failed ({self.errors[0]}), retried next tick")
        if self.superseded:
            parts.append(f"{self.superseded} superseded")
        return ", ".join(parts)


class AlertDispatcher:
    def __init__(
        self, store: AlertStore, notifier: WebhookNotifier, *, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self._clock = clock

    # -- transitions ----------------------------------------------------------------------------
    def raise_alert(self, alert: Alert, *, observed_at: dt.datetime) -> Notification | None:
        """Open the alert's key; the one caller that opens it logs it and queues its delivery.

        A check alert already open is extended when this failure holds objects its episode has not seen
        (new damage): one more notification naming only those, logged and queued the same way.
        """
        payload = alert_payload(alert, at=observed_at)
        failing = FailingSet(shown=alert.failing_keys, hashes=alert.all_key_hashes(), total=alert.objects_failing)

        def extend(row: Row, damage: NewDamage) -> dict[str, Any]:
            return self._extension(row, damage, alert, observed_at)

        try:
            notification = self.store.open(
                alert.key, kind=alert.kind, subject=alert.subject, partition_key=alert.partition,
                observed_at=observed_at, run_id=alert.run_id, payload=payload, deliver=self.notifier.configured,
                failing=failing, extend=extend if alert.kind == "check" else None,
            )
        except Exception:
            # The database is unreachable: dedup is impossible, but the failure must still leave a trace
            # (a run status sensor does not retry an event its function raised on).
            log_alert({**payload, "details": {**payload["details"], "alert_state": "unrecorded"}})
            raise
        if notification is not None:
            log_alert(notification.payload)
        return notification

    @staticmethod
    def _extension(row: Row, damage: NewDamage, alert: Alert, at: dt.datetime) -> dict[str, Any]:
        """The payload of new damage on the open `row`, as it was before this failure.

        If the row's notification is still undelivered, it is replaced, so the one message that goes out
        says everything: an opening alert becomes an opening alert naming the keys failing now first,
        then those it named before; an extension becomes one extension naming the new keys of both.
        """
        last = row["last_payload"] or {}
        previous = int((last.get("details") or {}).get("extension") or 0)  # 0: the opening alert
        undelivered = row["delivery_state"] == "pending"
        if undelivered and not previous:
            keys = tuple(dict.fromkeys([*alert.failing_keys, *last.get("failing_keys", [])]))
            return alert_payload(replace(alert, failing_keys=keys[:MAX_KEYS]), at=at)
        keys, unnamed = damage.keys, damage.unnamed
        if undelivered:
            keys = tuple(dict.fromkeys([*last.get("new_keys", []), *keys]))
            unnamed += int(last["details"].get("new_keys_unnamed") or 0)
        return extension_payload(alert, at=at, new_keys=keys, unnamed=unnamed, first_seen=row["first_seen_at"],
                                 extension=previous if undelivered else previous + 1)

    def resolve(self, key: str, *, observed_at: dt.datetime, run_id: str | None) -> Notification | None:
        def build(row: Row) -> dict:
            return recovery_payload(
                row["last_payload"], at=observed_at, first_seen=row["first_seen_at"],
                occurrences=row["occurrences"], run_id=run_id, alert_delivered=row["delivery_state"] != "pending",
            )

        notification = self.store.resolve(
            key, observed_at=observed_at, run_id=run_id, build_payload=build, deliver=self.notifier.configured)
        if notification is not None:
            log_alert(notification.payload)
        return notification

    def resolve_covered(
        self, kind: str, subject: str, partition: str, *, observed_at: dt.datetime, run_id: str | None,
    ) -> list[Notification]:
        """A success for `partition` resolves its own key and every open day (or range) it covers.

        A ranged run or an evaluation over "first..last" that passes proves each of those days, so their
        single-day alerts recover too; "all" covers every partition. A single day never resolves a range.
        """
        bounds = partition_bounds(partition)
        keys = {alert_key(kind, subject, partition)}
        for key, other in self.store.open_partitions(kind, subject):
            if partition == "all":
                keys.add(key)
                continue
            inner = partition_bounds(other)
            if bounds and inner and bounds[0] <= inner[0] and inner[1] <= bounds[1]:
                keys.add(key)
        done = []
        for key in sorted(keys):
            notification = self.resolve(key, observed_at=observed_at, run_id=run_id)
            if notification is not None:
                done.append(notification)
        return done

    # -- delivery -------------------------------------------------------------------------------
    @property
    def lease_seconds(self) -> float:
        backoff = sum(self.notifier.backoff_seconds * 2 ** i for i in range(self.notifier.attempts))
        return self.notifier.timeout * self.notifier.attempts + backoff + 10

    def deliver_pending(
        self, *, budget_seconds: float = 20.0, limit: int = 100, attempts: int | None = None,
    ) -> DeliveryReport:
        """POST pending notifications, oldest first, until none is left, the budget is spent or one fails.

        The first POST always starts; no other starts once `budget_seconds` are spent, so the worst case
        is the budget plus one delivery (attempts x timeout). After one failure the rest waits for the
        next tick: a webhook that is down would only make every POST time out in turn. Never raises
        because of the webhook.
        """
        report = DeliveryReport()
        if not self.notifier.configured:
            return report
        started = self._clock()
        for i in range(limit):
            if i and self._clock() - started > budget_seconds:
                break
            notification = self.store.claim_pending(lease_seconds=self.lease_seconds)
            if notification is None:
                break
            result = self.notifier.post(notification.payload, attempts=attempts)
            if result.delivered:
                if self.store.mark_delivered(notification):
                    report.delivered += 1
                else:
                    report.superseded += 1
                continue
            error = result.error or "unknown error"
            self.store.mark_failed(notification, error)
            report.failed += 1
            report.errors.append(error)
            log.warning("alert %s (%s) not delivered after %d attempt(s): %s; it stays pending",
                        notification.alert_key, notification.event, result.attempts, error)
            break
        return report
