"""Alert state in PostgreSQL (vault_secure.alerts): one row per distinct failure key.

Why a table and not the sensor cursor: several sensors (check, run failure, run success) and several
processes (daemon, a second daemon during a deploy, tests) see the same failure; only the database can
make "open it, and send it once" atomic. Every transition is one transaction that holds the row lock,
and only the caller that made the transition gets a `Notification` back, so two ticks never both send.

Delivery is recorded on the same row: the notification of the row's current state is `pending` until
a webhook POST succeeded, then `delivered` (or `skipped` when no webhook is configured). A pending
notification is claimed with a short lease (FOR UPDATE SKIP LOCKED) before it is sent and marked
delivered only if no newer transition replaced it meanwhile: a failed delivery is retried on a later
tick and a delivered one is never sent again. (A process killed between the POST and the commit leaves
the lease to expire and the notice is sent again: at least once, never silently lost.)

New damage is never hidden behind old damage (migration 012): an open row remembers the failing objects
it has announced in its episode (`seen_key_hashes`, `seen_keys`, `peak_failing`). A later failure that
finds objects outside that set is an *extension*: one more notification naming only the new keys, on the
same row; the same objects failing again, or fewer, are only counted. An extension that finds the row's
notification still undelivered replaces it with one that says both (see `AlertDispatcher`), so nothing
queued is lost.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from vault_pipeline.alerting.payload import key_hash

Row = dict[str, Any]


@dataclass(frozen=True)
class Notification:
    """A message to deliver: the payload of a row's current state, identified by (key, seq)."""

    alert_key: str
    seq: int
    payload: dict[str, Any]
    transition: str = "open"  # "open", "extend" (new failing objects on an open alert) or "resolve"

    @property
    def event(self) -> str:
        return str(self.payload.get("event", "alert"))


@dataclass(frozen=True)
class FailingSet:
    """The failing objects one failed evaluation identifies."""

    shown: tuple[str, ...] = ()  # the keys it names (a check shows at most 20)
    hashes: frozenset[str] = frozenset()  # key_hash of every object it identifies, the shown ones included
    total: int | None = None  # objects failing in all, identified or not (`objects_failing`)


@dataclass(frozen=True)
class NewDamage:
    """Failing objects an open alert has not announced yet."""

    keys: tuple[str, ...] = ()  # named, in the evaluation's order
    unnamed: int = 0  # further new objects, known from their hash or from the count only

    def __bool__(self) -> bool:
        return bool(self.keys or self.unnamed)


def new_damage(row: Row, failing: FailingSet) -> NewDamage:
    """What `failing` holds that the open `row`'s episode has not seen.

    An object is new when its hash is not among the episode's. The objects no hash covers (a check that
    identifies fewer objects than it counts) are judged by the count: more failing than the episode's
    highest count means new ones, however many the evaluation could name. Keys that disappeared are
    not damage, and a key that fails again after disappearing was seen: neither is new.
    """
    seen = set(row.get("seen_key_hashes") or ())
    fresh = failing.hashes - seen
    named: list[str] = []
    for key in failing.shown:
        if key_hash(key) in fresh and key not in named:
            named.append(key)
    unnamed = len(fresh) - len({key_hash(k) for k in named})
    peak = row.get("peak_failing")
    total = failing.total
    if total is not None and peak is not None and total > peak and total > len(failing.hashes):
        unnamed = max(unnamed, total - peak - len(named))
    return NewDamage(tuple(named), unnamed)


def _peak(current: int | None, total: int | None) -> int | None:
    return total if current is None else current if total is None else max(current, total)


class AlertStore:
    """Data access for vault_secure.alerts; shares the tracking database's pool (schema from migrations)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    # -- transitions ----------------------------------------------------------------------------
    def open(
        self, alert_key: str, *, kind: str, subject: str, partition_key: str, observed_at: dt.datetime,
        run_id: str | None, payload: dict[str, Any], deliver: bool, failing: FailingSet | None = None,
        extend: Callable[[Row, NewDamage], dict[str, Any]] | None = None,
    ) -> Notification | None:
        """Record a failure. Returns the notification to send if this call opened or extended the key.

        Already open: the failure goes on, counted but not re-sent, unless `extend` is given and `failing`
        holds objects the episode has not seen (`new_damage`): then `extend(row, damage)` (the locked row
        as it was) builds the payload of one more notification, queued like an opening one. Resolved by an
        observation newer than this one (a lagging sensor delivering an old failure): ignored.
        """
        delivery = "pending" if deliver else "skipped"
        failing = failing or FailingSet()
        keys = {"seen_keys": list(dict.fromkeys(failing.shown)), "seen_key_hashes": sorted(failing.hashes),
                "peak_failing": failing.total}
        with self.pool.connection() as conn, conn.transaction():
            inserted = conn.execute(
                """
                INSERT INTO vault_secure.alerts AS a
                    (alert_key, kind, subject, partition_key, state, first_seen_at, last_seen_at, last_event_at,
                     last_run_id, last_payload, delivery_state, seen_keys, seen_key_hashes, peak_failing)
                VALUES (%(key)s, %(kind)s, %(subject)s, %(partition)s, 'open', %(at)s, %(at)s, %(at)s,
                        %(run)s, %(payload)s, %(delivery)s, %(seen_keys)s, %(seen_key_hashes)s, %(peak_failing)s)
                ON CONFLICT (alert_key) DO NOTHING
                RETURNING notification_seq
                """,
                {"key": alert_key, "kind": kind, "subject": subject, "partition": partition_key, "at": observed_at,
                 "run": run_id, "payload": Jsonb(payload), "delivery": delivery, **keys},
            ).fetchone()
            if inserted is not None:
                return Notification(alert_key, int(inserted[0]), payload)
            row = self._lock(conn, alert_key)
            if row is None or observed_at < row["last_event_at"]:
                return None  # older than what the row already reflects
            if row["state"] == "open":
                if run_id is not None and run_id == row["last_run_id"]:
                    return None  # the same failure reported again (a re-evaluated tick), not a new one
                return self._go_on(conn, row, failing, observed_at=observed_at, run_id=run_id, delivery=delivery,
                                   extend=extend)
            seq = conn.execute(
                """
                UPDATE vault_secure.alerts SET state = 'open', first_seen_at = %(at)s, last_seen_at = %(at)s,
                    last_event_at = %(at)s, resolved_at = NULL, occurrences = 1, episodes = episodes + 1,
                    last_run_id = %(run)s, last_payload = %(payload)s, notification_seq = notification_seq + 1,
                    delivery_state = %(delivery)s, delivery_attempts = 0, delivery_lease_until = NULL,
                    last_delivery_error = NULL, delivered_at = NULL, seen_keys = %(seen_keys)s,
                    seen_key_hashes = %(seen_key_hashes)s, peak_failing = %(peak_failing)s, extensions = 0,
                    extended_at = NULL, updated_at = now()
                WHERE alert_key = %(key)s
                RETURNING notification_seq
                """,
                {"key": alert_key, "at": observed_at, "run": run_id, "payload": Jsonb(payload),
                 "delivery": delivery, **keys},
            ).fetchone()[0]
            return Notification(alert_key, int(seq), payload)

    @staticmethod
    def _go_on(
        conn: Any, row: Row, failing: FailingSet, *, observed_at: dt.datetime, run_id: str | None, delivery: str,
        extend: Callable[[Row, NewDamage], dict[str, Any]] | None,
    ) -> Notification | None:
        """An open alert fails again: count it, remember its objects, and extend it if some are new."""
        damage = new_damage(row, failing) if extend is not None else NewDamage()
        seen_keys = list(row["seen_keys"] or ())
        seen_keys += [k for k in dict.fromkeys(failing.shown) if k not in set(seen_keys)]
        params = {"key": row["alert_key"], "at": observed_at, "run": run_id, "seen_keys": seen_keys,
                  "seen_key_hashes": sorted(set(row["seen_key_hashes"] or ()) | failing.hashes),
                  "peak_failing": _peak(row["peak_failing"], failing.total)}
        remember = ("last_seen_at = %(at)s, last_event_at = %(at)s, last_run_id = %(run)s,"
                    " occurrences = occurrences + 1, seen_keys = %(seen_keys)s,"
                    " seen_key_hashes = %(seen_key_hashes)s, peak_failing = %(peak_failing)s, updated_at = now()")
        if not damage:
            conn.execute(f"UPDATE vault_secure.alerts SET {remember} WHERE alert_key = %(key)s", params)
            return None
        assert extend is not None
        payload = extend(row, damage)
        seq = conn.execute(
            f"""
            UPDATE vault_secure.alerts SET {remember}, extensions = extensions + 1, extended_at = %(at)s,
                last_payload = %(payload)s, notification_seq = notification_seq + 1,
                delivery_state = %(delivery)s, delivery_attempts = 0, delivery_lease_until = NULL,
                last_delivery_error = NULL, delivered_at = NULL
            WHERE alert_key = %(key)s
            RETURNING notification_seq
            """,
            {**params, "payload": Jsonb(payload), "delivery": delivery},
        ).fetchone()[0]
        return Notification(row["alert_key"], int(seq), payload, transition="extend")

    def resolve(
        self, alert_key: str, *, observed_at: dt.datetime, run_id: str | None,
        build_payload: Callable[[Row], dict[str, Any]], deliver: bool,
    ) -> Notification | None:
        """Record a success. Returns the recovery notification only if this call resolved an open key.

        `build_payload(row)` sees the open row (its alert payload, first_seen_at, occurrences,
        delivery_state) and returns the recovery payload. A success older than the failure that opened
        or last renewed the row does not resolve it.
        """
        with self.pool.connection() as conn, conn.transaction():
            row = self._lock(conn, alert_key)
            if row is None or row["state"] != "open" or observed_at < row["last_event_at"]:
                return None
            payload = build_payload(row)
            seq = conn.execute(
                """
                UPDATE vault_secure.alerts SET state = 'resolved', resolved_at = %(at)s, last_event_at = %(at)s,
                    last_run_id = %(run)s, last_payload = %(payload)s, notification_seq = notification_seq + 1,
                    delivery_state = %(delivery)s, delivery_attempts = 0, delivery_lease_until = NULL,
                    last_delivery_error = NULL, delivered_at = NULL, updated_at = now()
                WHERE alert_key = %(key)s
                RETURNING notification_seq
                """,
                {"key": alert_key, "at": observed_at, "run": run_id, "payload": Jsonb(payload),
                 "delivery": "pending" if deliver else "skipped"},
            ).fetchone()[0]
            return Notification(alert_key, int(seq), payload, transition="resolve")

    @staticmethod
    def _lock(conn: Any, alert_key: str) -> Row | None:
        return conn.cursor(row_factory=dict_row).execute(
            "SELECT * FROM vault_secure.alerts WHERE alert_key = %s FOR UPDATE", (alert_key,)
        ).fetchone()

    def open_partitions(self, kind: str, subject: str) -> list[tuple[str, str]]:
        """(alert_key, partition_key) of the open alerts of one check or job."""
        with self.pool.connection() as conn:
            return [(r[0], r[1]) for r in conn.execute(
                "SELECT alert_key, partition_key FROM vault_secure.alerts"
                " WHERE state = 'open' AND kind = %s AND subject = %s ORDER BY partition_key",
                (kind, subject),
            )]

    # -- delivery -------------------------------------------------------------------------------
    def claim_pending(self, *, lease_seconds: float) -> Notification | None:
        """Take the oldest pending notification nobody is sending, leasing it for `lease_seconds`."""
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                """
                UPDATE vault_secure.alerts a
                SET delivery_lease_until = now() + make_interval(secs => %s),
                    delivery_attempts = a.delivery_attempts + 1
                FROM (SELECT alert_key FROM vault_secure.alerts
                      WHERE delivery_state = 'pending'
                        AND (delivery_lease_until IS NULL OR delivery_lease_until < now())
                      ORDER BY updated_at, alert_key LIMIT 1
                      FOR UPDATE SKIP LOCKED) c
                WHERE a.alert_key = c.alert_key
                RETURNING a.alert_key, a.notification_seq, a.last_payload
                """,
                (lease_seconds,),
            ).fetchone()
        return Notification(row[0], int(row[1]), row[2]) if row else None

    def mark_delivered(self, notification: Notification) -> bool:
        """False if a newer transition replaced the notification while it was being sent."""
        with self.pool.connection() as conn, conn.transaction():
            return conn.execute(
                "UPDATE vault_secure.alerts SET delivery_state = 'delivered', delivered_at = now(),"
                " delivery_lease_until = NULL, last_delivery_error = NULL"
                " WHERE alert_key = %s AND notification_seq = %s AND delivery_state = 'pending'",
                (notification.alert_key, notification.seq),
            ).rowcount == 1

    def mark_failed(self, notification: Notification, error: str) -> None:
        """Keep it pending and release the lease: the next tick tries again."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                "UPDATE vault_secure.alerts SET delivery_lease_until = NULL, last_delivery_error = %s"
                " WHERE alert_key = %s AND notification_seq = %s AND delivery_state = 'pending'",
                (error[:500], notification.alert_key, notification.seq),
            )

    def pending_count(self) -> int:
        with self.pool.connection() as conn:
            return int(conn.execute(
                "SELECT count(*) FROM vault_secure.alerts WHERE delivery_state = 'pending'").fetchone()[0])

    # -- inspection -----------------------------------------------------------------------------
    def get(self, alert_key: str) -> Row | None:
        with self.pool.connection() as conn:
            return conn.cursor(row_factory=dict_row).execute(
                "SELECT * FROM vault_secure.alerts WHERE alert_key = %s", (alert_key,)).fetchone()

    def rows(self) -> list[Row]:
        with self.pool.connection() as conn:
            return conn.cursor(row_factory=dict_row).execute(
                "SELECT * FROM vault_secure.alerts ORDER BY alert_key").fetchall()
