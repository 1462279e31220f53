"""Completion webhooks: a signed JSON notice, at least once, when a day's replication, a backup or a restore
is complete (issue 17). Plain Python, no Dagster; separate from the failure alerts, whose POST it reuses
(`WebhookNotifier`: retry classification, URL redaction).

* `notice(event, subject, facts)` builds the body. Its idempotency key is derived from (event, subject) only,
  so the same completion always carries the same key, whoever enqueues it and however often.
* `CompletionNotices.enqueue` records one row per (key, endpoint) in vault_secure.completion_notices, with
  INSERT ... ON CONFLICT DO NOTHING: a completion seen twice (a retried run, two sensors) is sent once.
  `endpoint` is a fingerprint of the URL (`endpoint_fingerprint`), never the URL.
* `CompletionNotices.deliver_due` claims due rows with FOR UPDATE SKIP LOCKED and a short lease (two
  processes never POST the same row at once), POSTs each once, and records the outcome: delivered; or retried
  at now + min(base * 2**(attempts - 1), max) plus a little jitter; or abandoned after max attempts. A process
  killed between the POST and the commit leaves the lease to expire and the notice is sent again: receivers
  deduplicate by the idempotency key (at least once, never silently lost).
* Signing: `X-Vault-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>` with
  `X-Vault-Timestamp: <unix seconds>` (a receiver rejects old timestamps: no replay) and `Idempotency-Key`.
  Receivers check with `verify_signature`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from vault_pipeline.alerting.notify import WebhookNotifier

log = logging.getLogger("vault_pipeline.completion")

CompletionEvent = Literal["replication_day_complete", "backup_complete", "restore_complete"]
EVENTS: tuple[str, ...] = get_args(CompletionEvent)
SOURCE = "vault-pipeline"
USER_AGENT = "vault-pipeline-completion/1"
SIGNATURE_HEADER = "X-Vault-Signature"
TIMESTAMP_HEADER = "X-Vault-Timestamp"
KEY_HEADER = "Idempotency-Key"
DEFAULT_TOLERANCE_SECONDS = 300  # how old a signed timestamp `verify_signature` accepts
MAX_ERROR_CHARS = 300
TEXT = {
    "replication_day_complete": "replication of {subject} complete",
    "backup_complete": "tracking database backup {subject} complete",
    "restore_complete": "tracking database restore {subject} complete",
}


# -- the notice -------------------------------------------------------------------------------------
def idempotency_key(event: str, subject: str) -> str:
    """The same (event, subject) always gives the same key: 32 hex digits of SHA-256 (safe in a header)."""
    return hashlib.sha256(f"{event}\n{subject}".encode()).hexdigest()[:32]


def endpoint_fingerprint(url: str) -> str:
    """What identifies an endpoint in the table, the logs and `status`: 16 hex digits of the URL's SHA-256."""
    return hashlib.sha256(url.strip().encode()).hexdigest()[:16]


def split_urls(raw: str) -> list[str]:
    """VAULT_COMPLETION_WEBHOOK_URLS: comma-separated, stripped, empty entries and repeats left out, in order."""
    return list(dict.fromkeys(u.strip() for u in raw.split(",") if u.strip()))


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def notice(
    event: str, subject: str, facts: Mapping[str, Any], *, vault: Mapping[str, str] | None = None,
    at: dt.datetime | None = None,
) -> dict[str, Any]:
    """The JSON body of one completion. `facts` are counts, ids and names (nothing secret: the body is stored
    in PostgreSQL); `vault` names the deployment's parts (bucket names), never an endpoint or a credential."""
    if event not in EVENTS:
        raise ValueError(f"unknown completion event {event!r}: one of {', '.join(EVENTS)}")
    if not subject:
        raise ValueError("a completion needs a subject (the day, the backup id, the restore's run id)")
    at = at or dt.datetime.now(dt.UTC)
    return {
        "idempotency_key": idempotency_key(event, subject),
        "event": event,
        "subject": subject,
        "source": SOURCE,
        "occurred_at": _iso(at),
        "sent_at": _iso(at),  # replaced at each attempt
        "vault": {"source": SOURCE, **{str(k): str(v) for k, v in (vault or {}).items()}},
        "facts": dict(facts),
        "text": f"[{SOURCE}] " + TEXT[event].format(subject=subject),
    }


# -- signatures -------------------------------------------------------------------------------------
def _secret_bytes(secret: str | bytes) -> bytes:
    return secret if isinstance(secret, bytes) else secret.encode("utf-8")


def signature(secret: str | bytes, timestamp: str | int, body: bytes) -> str:
    """The X-Vault-Signature value: "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + body)."""
    mac = hmac.new(_secret_bytes(secret), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def signed_headers(
    secret: str | bytes, key: str, *, clock: Callable[[], float] = time.time,
) -> Callable[[bytes], dict[str, str]]:
    """The headers of one attempt for `WebhookNotifier.post(headers=...)`: signed at send time."""

    def headers(body: bytes) -> dict[str, str]:
        timestamp = str(int(clock()))
        return {SIGNATURE_HEADER: signature(secret, timestamp, body), TIMESTAMP_HEADER: timestamp,
                KEY_HEADER: key, "User-Agent": USER_AGENT}

    return headers


def verify_signature(
    secret: str | bytes, timestamp: str | None, body: bytes, header: str | None, *,
    tolerance_seconds: float | None = DEFAULT_TOLERANCE_SECONDS, now: float | None = None,
) -> bool:
    """For receivers: True when `header` (X-Vault-Signature) signs this exact `body` with `timestamp`
    (X-Vault-Timestamp) and, unless `tolerance_seconds` is None, the timestamp is that recent (a replayed
    request is refused). Compared in constant time."""
    if not timestamp or not header or not timestamp.isdigit():
        return False
    age = (time.time() if now is None else now) - int(timestamp)
    if tolerance_seconds is not None and abs(age) > tolerance_seconds:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header.strip())


# -- delivery bookkeeping ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Retry:
    """How a failed notice waits: base * 2**(attempts - 1), at most `max_seconds`, then up to +10 % jitter."""

    max_attempts: int = 20
    base_seconds: float = 30.0
    max_seconds: float = 3600.0
    jitter: float = 0.1

    def delay(self, attempts: int, rand: Callable[[], float] = random.random) -> float:
        wait = min(self.base_seconds * 2 ** max(0, attempts - 1), self.max_seconds)
        return wait * (1 + self.jitter * rand())


@dataclass(frozen=True)
class ClaimedNotice:
    idempotency_key: str
    endpoint: str
    event: str
    subject: str
    payload: dict[str, Any]
    attempts: int  # this one included
    lease: str  # this claim's lease_owner: only it records the outcome


@dataclass
class CompletionDeliveryReport:
    delivered: int = 0
    retrying: int = 0  # failed this time, due again later
    abandoned: int = 0  # failed for the last time
    lost_lease: int = 0  # took longer than the lease: another process may have sent it as well
    unconfigured: dict[str, int] = field(default_factory=dict)  # pending rows of endpoints not configured
    errors: list[str] = field(default_factory=list)  # "<endpoint>: <error>", never the URL

    def summary(self) -> str:
        parts = [f"{self.delivered} delivered"]
        if self.retrying:
            parts.append(f"{self.retrying} to retry ({self.errors[0]})")
        if self.abandoned:
            parts.append(f"{self.abandoned} abandoned after the last attempt")
        if self.lost_lease:
            parts.append(f"{self.lost_lease} outlived their lease")
        if self.unconfigured:
            parts.append(f"{sum(self.unconfigured.values())} pending for endpoint(s) no longer configured "
                         f"({', '.join(sorted(self.unconfigured))})")
        return ", ".join(parts)


class CompletionNotices:
    """vault_secure.completion_notices (schema from migration 019); thread-safe through its pool."""

    def __init__(self, pool: ConnectionPool | str, *, retry: Retry | None = None, lease_seconds: float = 30.0) -> None:
        self._own_pool = isinstance(pool, str)
        self.pool = ConnectionPool(pool, min_size=1, max_size=4, open=True, kwargs={"autocommit": False},
                                   name="vault-completion") if isinstance(pool, str) else pool
        self.retry = retry or Retry()
        self.lease_seconds = lease_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}"  # plus one token per claim

    def close(self) -> None:
        if self._own_pool:
            self.pool.close()

    # -- enqueue --------------------------------------------------------------------------------
    def enqueue(
        self, event: str, subject: str, facts: Mapping[str, Any], endpoints: Iterable[str], *,
        vault: Mapping[str, str] | None = None,
    ) -> bool:
        """Queue the notice for each endpoint fingerprint; True if it was new for at least one of them."""
        endpoints = sorted(set(endpoints))
        if not endpoints:
            return False
        payload = notice(event, subject, facts, vault=vault)
        with self.pool.connection() as conn, conn.transaction():
            inserted = 0
            for endpoint in endpoints:
                inserted += conn.execute(
                    "INSERT INTO vault_secure.completion_notices"
                    " (idempotency_key, endpoint, event, subject, payload)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (idempotency_key, endpoint) DO NOTHING",
                    (payload["idempotency_key"], endpoint, event, subject, Jsonb(payload)),
                ).rowcount
        if inserted:
            log.info("completion %s %s queued for %d endpoint(s) (key %s)", event, subject, inserted,
                     payload["idempotency_key"])
        return inserted > 0

    # -- delivery -------------------------------------------------------------------------------
    # `now` is None in production: the database's clock decides what is due and when a lease ends (one clock
    # for every process); tests pass a moment to skip a backoff without sleeping.
    _NOW = "COALESCE(%(now)s::timestamptz, now())"

    def claim(self, endpoints: list[str], now: dt.datetime | None = None) -> ClaimedNotice | None:
        """Lease the oldest due notice of these endpoints that no other process holds."""
        if not endpoints:
            return None
        lease = f"{self.owner}:{uuid.uuid4().hex[:12]}"
        with self.pool.connection() as conn, conn.transaction():
            row = conn.cursor(row_factory=dict_row).execute(
                f"""
                UPDATE vault_secure.completion_notices n
                SET lease_owner = %(owner)s, lease_expires_at = {self._NOW} + make_interval(secs => %(lease)s),
                    attempts = n.attempts + 1, last_attempt_at = {self._NOW}
                FROM (SELECT idempotency_key, endpoint FROM vault_secure.completion_notices
                      WHERE status = 'pending' AND endpoint = ANY(%(endpoints)s) AND next_attempt_at <= {self._NOW}
                        AND (lease_expires_at IS NULL OR lease_expires_at < {self._NOW})
                      ORDER BY next_attempt_at, created_at, idempotency_key LIMIT 1
                      FOR UPDATE SKIP LOCKED) c
                WHERE n.idempotency_key = c.idempotency_key AND n.endpoint = c.endpoint
                RETURNING n.idempotency_key, n.endpoint, n.event, n.subject, n.payload, n.attempts
                """,
                {"owner": lease, "now": now, "lease": self.lease_seconds, "endpoints": endpoints},
            ).fetchone()
        return ClaimedNotice(**row, lease=lease) if row else None

    def _settle(self, claimed: ClaimedNotice, sql: str, params: dict[str, Any]) -> bool:
        """Apply `sql` to the claimed row if this process still holds it; False if its lease went to another."""
        with self.pool.connection() as conn, conn.transaction():
            return conn.execute(
                f"UPDATE vault_secure.completion_notices SET {sql}, lease_owner = NULL, lease_expires_at = NULL"
                " WHERE idempotency_key = %(key)s AND endpoint = %(endpoint)s AND status = 'pending'"
                " AND lease_owner = %(owner)s",
                {**params, "key": claimed.idempotency_key, "endpoint": claimed.endpoint, "owner": claimed.lease},
            ).rowcount == 1

    def mark_delivered(self, claimed: ClaimedNotice, http_status: int | None, now: dt.datetime | None = None) -> bool:
        return self._settle(claimed, f"status = 'delivered', delivered_at = {self._NOW}, last_status = %(status)s,"
                                     " last_error = NULL", {"now": now, "status": http_status})

    def mark_failed(
        self, claimed: ClaimedNotice, http_status: int | None, error: str, now: dt.datetime | None = None,
    ) -> str | None:
        """Retry after the backoff, or abandon after the last attempt; the new status (None: lease lost)."""
        state = "abandoned" if claimed.attempts >= self.retry.max_attempts else "pending"
        done = self._settle(
            claimed, f"status = %(state)s, next_attempt_at = {self._NOW} + make_interval(secs => %(delay)s),"
                     " last_status = %(status)s, last_error = %(error)s",
            {"now": now, "state": state, "delay": self.retry.delay(claimed.attempts), "status": http_status,
             "error": error[:MAX_ERROR_CHARS]})
        return state if done else None

    def deliver_due(
        self, notifiers: Mapping[str, WebhookNotifier], secret: str | bytes, *, budget_seconds: float = 15.0,
        now: dt.datetime | None = None, limit: int = 200, clock: Callable[[], float] = time.monotonic,
    ) -> CompletionDeliveryReport:
        """POST the due notices of the configured endpoints (`notifiers`: fingerprint -> notifier), one attempt
        each, oldest first. The first POST always starts; none starts once `budget_seconds` are spent. An
        endpoint that fails is left alone for the rest of the call (the others go on). Pending rows of
        endpoints not in `notifiers` stay pending and are reported. Never raises because of an endpoint."""
        report = CompletionDeliveryReport()
        report.unconfigured = self.pending_unconfigured(list(notifiers))
        endpoints = [fp for fp, notifier in notifiers.items() if notifier.configured]
        started = clock()
        for i in range(limit):
            if not endpoints or (i and clock() - started > budget_seconds):
                break
            claimed = self.claim(endpoints, now)
            if claimed is None:
                break
            if not self._deliver_one(claimed, notifiers[claimed.endpoint], secret, now, report):
                endpoints.remove(claimed.endpoint)  # down: its other notices wait for the next call
        return report

    def _deliver_one(
        self, claimed: ClaimedNotice, notifier: WebhookNotifier, secret: str | bytes, now: dt.datetime | None,
        report: CompletionDeliveryReport,
    ) -> bool:
        """One POST of one claimed notice, its outcome recorded; False when the endpoint failed."""
        body = {**claimed.payload, "sent_at": _iso(dt.datetime.now(dt.UTC)), "attempt": claimed.attempts}
        result = notifier.post(body, attempts=1, headers=signed_headers(secret, claimed.idempotency_key))
        if result.delivered:
            if self.mark_delivered(claimed, result.status, now):
                report.delivered += 1
            else:
                report.lost_lease += 1
            return True
        error = notifier.redact(result.error or "unknown error")
        state = self.mark_failed(claimed, result.status, error, now)
        report.errors.append(f"{claimed.endpoint}: {error}")
        if state == "abandoned":
            report.abandoned += 1
            log.error("completion %s %s to endpoint %s abandoned after %d attempt(s): %s", claimed.event,
                      claimed.subject, claimed.endpoint, claimed.attempts, error)
        elif state == "pending":
            report.retrying += 1
            log.warning("completion %s %s to endpoint %s not delivered (attempt %d): %s; retried later",
                        claimed.event, claimed.subject, claimed.endpoint, claimed.attempts, error)
        else:
            report.lost_lease += 1
        return False

    def pending_unconfigured(self, configured: list[str]) -> dict[str, int]:
        """Pending notices per endpoint fingerprint that is not configured any more (they are never dropped)."""
        with self.pool.connection() as conn:
            return {fp: int(n) for fp, n in conn.execute(
                "SELECT endpoint, count(*) FROM vault_secure.completion_notices"
                " WHERE status = 'pending' AND NOT (endpoint = ANY(%s)) GROUP BY endpoint ORDER BY endpoint",
                (configured,))}

    # -- inspection -----------------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return conn.cursor(row_factory=dict_row).execute(
                "SELECT * FROM vault_secure.completion_notices ORDER BY created_at, idempotency_key, endpoint"
            ).fetchall()

    def summary(self, configured: Iterable[str] | None = None) -> dict[str, Any]:
        return summary(self.pool, configured=configured)


def summary(source: ConnectionPool | Any, *, configured: Iterable[str] | None = None) -> dict[str, Any]:
    """For `status`: notices by event and status, pending and abandoned counts, the oldest pending, the last
    error (redacted before it was stored), and the same per endpoint fingerprint; `configured` (fingerprints)
    marks the endpoints still configured. `source`: a pool or a psycopg connection. Never a URL."""
    if isinstance(source, ConnectionPool):
        with source.connection() as conn:
            return summary(conn, configured=configured)
    cur = source.cursor(row_factory=dict_row)
    now = cur.execute("SELECT now() AS now").fetchone()["now"]
    known = set(configured) if configured is not None else None
    by_event: dict[str, dict[str, int]] = {}
    endpoints: dict[str, dict[str, Any]] = {}
    for row in cur.execute(
        "SELECT event, endpoint, status, count(*) AS n FROM vault_secure.completion_notices GROUP BY 1, 2, 3"
    ):
        counts = by_event.setdefault(row["event"], {})
        counts[row["status"]] = counts.get(row["status"], 0) + row["n"]
        entry = endpoints.setdefault(row["endpoint"], {"pending": 0, "delivered": 0, "abandoned": 0})
        entry[row["status"]] += row["n"]
    for fingerprint, entry in endpoints.items():
        entry["configured"] = None if known is None else fingerprint in known
        entry["last_error"] = None
    oldest = cur.execute(
        "SELECT min(created_at) AS at FROM vault_secure.completion_notices WHERE status = 'pending'").fetchone()["at"]
    last_error = None
    # A delivered row's error is cleared: what is left is the trouble of notices still pending or abandoned.
    for row in cur.execute(
        "SELECT DISTINCT ON (endpoint) endpoint, last_error, last_status, event, subject, status, attempts,"
        " last_attempt_at FROM vault_secure.completion_notices WHERE last_error IS NOT NULL"
        " ORDER BY endpoint, last_attempt_at DESC NULLS LAST"
    ):
        error = {"endpoint": row["endpoint"], "error": row["last_error"], "http_status": row["last_status"],
                 "event": row["event"], "subject": row["subject"], "status": row["status"],
                 "attempts": row["attempts"], "at": _iso(row["last_attempt_at"]) if row["last_attempt_at"] else None}
        endpoints[row["endpoint"]]["last_error"] = error
        if last_error is None or (error["at"] or "") > (last_error["at"] or ""):
            last_error = error
    totals = {state: sum(e[state] for e in endpoints.values()) for state in ("pending", "delivered", "abandoned")}
    return {
        "by_event": by_event,
        **totals,
        "oldest_pending_at": _iso(oldest) if oldest else None,
        "oldest_pending_seconds": round((now - oldest).total_seconds(), 1) if oldest else None,
        "last_error": last_error,
        "endpoints": endpoints,
    }


# -- a day's replication ----------------------------------------------------------------------------
@dataclass
class DayTally:
    """The rows of one or more days of vault_secure.replication_status, for replication_day_complete."""

    objects: int = 0
    verified: int = 0  # status 'replicated' with verified_at set
    bytes: int = 0
    last_verified_at: dt.datetime | None = None

    @property
    def complete(self) -> bool:
        return self.objects > 0 and self.verified == self.objects

    def add(self, other: DayTally) -> None:
        self.objects += other.objects
        self.verified += other.verified
        self.bytes += other.bytes
        if other.last_verified_at and (self.last_verified_at is None or other.last_verified_at > self.last_verified_at):
            self.last_verified_at = other.last_verified_at


def replication_days(
    source: ConnectionPool | Any, source_bucket: str, first_day: dt.date, last_day: dt.date,
) -> dict[dt.date, DayTally]:
    """Per partition_day of the bucket between the two days: objects, verified objects, bytes, last verification.
    One aggregate query on the (partition_day, status) index."""
    if isinstance(source, ConnectionPool):
        with source.connection() as conn:
            return replication_days(conn, source_bucket, first_day, last_day)
    rows = source.execute(
        "SELECT partition_day, count(*),"
        " count(*) FILTER (WHERE status = 'replicated' AND verified_at IS NOT NULL),"
        " COALESCE(sum(ovh_size), 0), max(verified_at)"
        " FROM vault_secure.replication_status WHERE bucket_source = %s AND partition_day BETWEEN %s AND %s"
        " GROUP BY partition_day", (source_bucket, first_day, last_day)).fetchall()
    return {day: DayTally(int(n), int(ok), int(size), last) for day, n, ok, size, last in rows}
