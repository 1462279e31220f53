"""Completion webhooks on real PostgreSQL and a real loopback receiver (alerting/completion.py, the resource,
`vault-pipeline status`): one signed notice per completion, retried with backoff after a 500, never POSTed
twice at once, abandoned after the last attempt and shown by status, and the URL (a token in its path) never
stored or logged. Time is driven by passing `now`, never by sleeping through a backoff."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterator
from importlib import resources

import pytest
from dagster import EnvVar

from vault_pipeline.alerting import WebhookNotifier
from vault_pipeline.alerting.completion import (
    KEY_HEADER,
    TIMESTAMP_HEADER,
    CompletionNotices,
    Retry,
    endpoint_fingerprint,
    idempotency_key,
    summary,
    verify_signature,
)
from vault_pipeline.cli.main import main as cli_main
from vault_pipeline.replication.tracking import TrackingStore
from vault_pipeline.resources.completion_webhooks import completion_webhooks_from_env
from vault_pipeline.resources.tracking_db import shared_store
from vault_pipeline.settings import ConfigurationError, load_settings
from vault_pipeline_tests.alerting.completion_receiver import SECRET, CompletionReceiver, receiver
from vault_pipeline_tests.alerting.conftest import TOKEN, closed_port

__all__ = ["receiver"]  # the fixture, imported for pytest
EVENT = "backup_complete"
BASE = 30.0


@pytest.fixture
def tracking(tracking_dsn: str) -> Iterator[TrackingStore]:
    yield shared_store(tracking_dsn)  # migrated: 019_completion_notices.sql applied


def notices(tracking: TrackingStore, **retry: float) -> CompletionNotices:
    return CompletionNotices(tracking.pool, retry=Retry(base_seconds=BASE, max_seconds=3600, **retry),
                             lease_seconds=20)


def endpoint(receiver: CompletionReceiver) -> tuple[str, dict[str, WebhookNotifier]]:
    fingerprint = endpoint_fingerprint(receiver.url)
    return fingerprint, {fingerprint: WebhookNotifier(receiver.url, timeout=5, attempts=1)}


def db_now(tracking: TrackingStore) -> dt.datetime:
    with tracking.pool.connection() as conn:
        return conn.execute("SELECT now()").fetchone()[0]


def assert_token_nowhere(tracking: TrackingStore, *texts: str) -> None:
    """Neither the token nor any part of the URL's path: in no column of any row, in no given text."""
    rows = json.dumps([{k: str(v) for k, v in row.items()} for row in notices(tracking).rows()])
    secret = TOKEN.rsplit("/", 1)[-1]
    for text in (rows, *texts):
        assert TOKEN not in text and secret not in text and "/hooks/" not in text


def test_migration_is_idempotent_and_the_table_admin_only(tracking: TrackingStore) -> None:
    assert tracking.migrate() == []
    script = resources.files("vault_pipeline").joinpath("sql", "019_completion_notices.sql").read_text("utf-8")
    with tracking.pool.connection() as conn:
        conn.execute(script)
        (enabled,) = conn.execute("SELECT relrowsecurity FROM pg_class"
                                  " WHERE oid = 'vault_secure.completion_notices'::regclass").fetchone()
        policies = conn.execute("SELECT roles::text FROM pg_policies WHERE schemaname = 'vault_secure'"
                                " AND tablename = 'completion_notices'").fetchall()
    assert enabled and policies == [("{vault_admin}",)]


def test_one_signed_notice_per_completion(tracking: TrackingStore, receiver: CompletionReceiver) -> None:
    fingerprint, notifiers = endpoint(receiver)
    facts = {"backup_id": "2026-01-05T01-45-00Z", "bytes": 123456}
    first, second = notices(tracking), notices(tracking)  # two processes, two sensors, a retried run
    assert first.enqueue(EVENT, "2026-01-05T01-45-00Z", facts, [fingerprint]) is True
    assert second.enqueue(EVENT, "2026-01-05T01-45-00Z", {**facts, "bytes": 1}, [fingerprint]) is False
    assert first.deliver_due(notifiers, SECRET).delivered == 1
    assert second.deliver_due(notifiers, SECRET).delivered == 0
    assert len(receiver.all()) == 1

    (got,) = receiver.all()
    body = got.json
    key = idempotency_key(EVENT, "2026-01-05T01-45-00Z")
    assert body["idempotency_key"] == key == got.header(KEY_HEADER)
    assert body["event"] == EVENT and body["facts"] == facts and body["attempt"] == 1  # the first enqueue's
    assert body["vault"] == {"source": "vault-pipeline"} and "backup" in body["text"]
    assert got.verifies(SECRET)
    assert not got.verifies("another secret")
    timestamp = got.header(TIMESTAMP_HEADER)
    signature = got.header("X-Vault-Signature")
    assert signature.startswith("sha256=")
    assert not verify_signature(SECRET, timestamp, got.body.replace(b"123456", b"123457"), signature)  # tampered
    assert not verify_signature(SECRET, str(int(timestamp) - 1), got.body, signature)  # another timestamp
    assert not verify_signature(SECRET, timestamp, got.body, signature, now=int(timestamp) + 3600)  # a replay
    assert verify_signature(SECRET, timestamp, got.body, signature, tolerance_seconds=None, now=0)

    # Another subject is another completion; the same one again is still not re-sent.
    assert first.enqueue(EVENT, "2026-01-06T01-45-00Z", facts, [fingerprint]) is True
    assert first.enqueue(EVENT, "2026-01-05T01-45-00Z", facts, [fingerprint]) is False
    first.deliver_due(notifiers, SECRET)
    assert [r.key for r in receiver.all()] == [key, idempotency_key(EVENT, "2026-01-06T01-45-00Z")]
    row = next(r for r in first.rows() if r["idempotency_key"] == key)
    assert row["status"] == "delivered" and row["attempts"] == 1 and row["last_status"] == 200
    assert row["endpoint"] == fingerprint and row["delivered_at"] is not None


def test_a_500_is_retried_after_the_backoff_then_delivered_exactly_once(
    tracking: TrackingStore, receiver: CompletionReceiver, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fingerprint, notifiers = endpoint(receiver)
    store = notices(tracking)
    store.enqueue("restore_complete", "run-abc", {"run_id": "run-abc"}, [fingerprint])
    receiver.script = [500]
    t0 = db_now(tracking)

    report = store.deliver_due(notifiers, SECRET, now=t0)
    assert (report.delivered, report.retrying) == (0, 1) and len(receiver.all()) == 1
    (row,) = store.rows()
    assert row["status"] == "pending" and row["attempts"] == 1 and row["last_status"] == 500
    assert row["last_error"] == "HTTP 500" and row["lease_owner"] is None
    wait = (row["next_attempt_at"] - t0).total_seconds()
    assert BASE <= wait <= BASE * 1.1 + 0.001  # base, plus at most 10 % jitter

    assert store.deliver_due(notifiers, SECRET, now=t0 + dt.timedelta(seconds=BASE - 1)).delivered == 0
    assert len(receiver.all()) == 1, "not due yet: nothing sent"
    later = t0 + dt.timedelta(seconds=BASE * 1.1 + 1)
    assert store.deliver_due(notifiers, SECRET, now=later).delivered == 1
    assert store.deliver_due(notifiers, SECRET, now=later + dt.timedelta(days=1)).delivered == 0
    assert [r.answered for r in receiver.all()] == [500, 200]
    assert [r.json["attempt"] for r in receiver.all()] == [1, 2]
    assert len({r.key for r in receiver.all()}) == 1 and all(r.verifies() for r in receiver.all())
    (row,) = store.rows()
    assert row["status"] == "delivered" and row["attempts"] == 2 and row["last_error"] is None

    # A receiver that does not answer at all: the error names the exception, never the URL.
    down = f"http://127.0.0.1:{closed_port()}/hooks/{TOKEN}"
    down_fp = endpoint_fingerprint(down)
    store.enqueue("restore_complete", "run-def", {"run_id": "run-def"}, [down_fp])
    report = store.deliver_due({down_fp: WebhookNotifier(down, timeout=5, attempts=1)}, SECRET, now=later)
    assert report.retrying == 1 and "Connection refused" in report.errors[0]
    failed = next(r for r in store.rows() if r["endpoint"] == down_fp)
    assert "Connection refused" in failed["last_error"]
    assert_token_nowhere(tracking, caplog.text, report.summary(), json.dumps(store.summary(), default=str))


def test_two_deliverers_at_once_never_post_the_same_notice_twice(
    tracking: TrackingStore, receiver: CompletionReceiver,
) -> None:
    fingerprint, notifiers = endpoint(receiver)
    receiver.delay_seconds = 0.02
    count = 24
    for i in range(count):
        notices(tracking).enqueue("replication_day_complete", f"2026-01-{i + 1:02}/3/0", {"day": i}, [fingerprint])
    deliverers = [notices(tracking), notices(tracking)]
    barrier = threading.Barrier(len(deliverers))
    delivered = [0] * len(deliverers)

    def deliver(i: int) -> None:
        barrier.wait()
        delivered[i] = deliverers[i].deliver_due(notifiers, SECRET, budget_seconds=60).delivered

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(len(deliverers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    keys = [r.key for r in receiver.all()]
    assert len(keys) == len(set(keys)) == count, "every notice POSTed exactly once"
    assert sum(delivered) == count and all(delivered), f"both deliverers worked: {delivered}"
    assert {r["status"] for r in deliverers[0].rows()} == {"delivered"}

    # A deliverer that dies between its POST and its commit: its lease keeps the notice from a second POST
    # until it expires, then the notice is sent again (at least once; the receiver dedups by the key).
    notices(tracking).enqueue("backup_complete", "b-1", {}, [fingerprint])
    t0 = db_now(tracking)
    crashed = deliverers[0].claim([fingerprint], t0)
    assert crashed is not None and crashed.subject == "b-1"
    assert deliverers[1].deliver_due(notifiers, SECRET, now=t0 + dt.timedelta(seconds=5)).delivered == 0
    assert deliverers[1].deliver_due(notifiers, SECRET, now=t0 + dt.timedelta(seconds=21)).delivered == 1
    assert deliverers[0].mark_delivered(crashed, 200, t0) is False  # its lease went to the other
    row = next(r for r in deliverers[1].rows() if r["subject"] == "b-1")
    assert row["attempts"] == 2 and row["status"] == "delivered"


def run_status(tracking_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
               *args: str) -> tuple[int, str]:
    monkeypatch.setenv("VAULT_DATABASE_URL", tracking_dsn)
    capsys.readouterr()
    code = cli_main(["status", "--no-dagster", "--no-workers", *args])
    return code, capsys.readouterr().out


def test_max_attempts_abandon_the_notice_and_status_shows_it(
    tracking: TrackingStore, tracking_dsn: str, receiver: CompletionReceiver, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("OVH_S3_BUCKET_DOCUMENTS", "VAULT_COMPLETION_WEBHOOK_URLS"):
        monkeypatch.delenv(name, raising=False)
    fingerprint, notifiers = endpoint(receiver)
    store = notices(tracking, max_attempts=3)
    store.enqueue("backup_complete", "b-7", {"backup_id": "b-7"}, [fingerprint])
    receiver.status = 503
    now = db_now(tracking)
    states = []
    for _ in range(4):
        report = store.deliver_due(notifiers, SECRET, now=now)
        states.append((report.retrying, report.abandoned))
        now += dt.timedelta(hours=2)  # beyond any backoff of this test
    assert states == [(1, 0), (1, 0), (0, 1), (0, 0)] and len(receiver.all()) == 3
    (row,) = store.rows()
    assert row["status"] == "abandoned" and row["attempts"] == 3 and row["last_error"] == "HTTP 503"

    # A notice for an endpoint that is no longer configured stays pending and is reported, not dropped.
    store.enqueue("backup_complete", "b-8", {}, ["0123456789abcdef"])
    report = store.deliver_due(notifiers, SECRET)
    assert report.unconfigured == {"0123456789abcdef": 1} and "no longer configured" in report.summary()
    facts = summary(tracking.pool, configured=[fingerprint])
    assert facts["by_event"] == {"backup_complete": {"abandoned": 1, "pending": 1}}
    assert (facts["pending"], facts["abandoned"], facts["delivered"]) == (1, 1, 0)
    assert facts["endpoints"]["0123456789abcdef"]["configured"] is False
    assert facts["last_error"]["error"] == "HTTP 503" and facts["last_error"]["endpoint"] == fingerprint

    monkeypatch.setenv("VAULT_COMPLETION_WEBHOOK_URLS", receiver.url)
    code, out = run_status(tracking_dsn, monkeypatch, capsys, "--json")
    completion = json.loads(out)["completion"]
    assert code == 1 and completion["abandoned"] == 1 and completion["configured_endpoints"] == 1
    assert completion["endpoints"][fingerprint]["configured"] is True
    assert completion["endpoints"][fingerprint]["last_error"]["http_status"] == 503
    attention = json.loads(out)["attention"]
    assert any("1 completion notice(s) abandoned" in line for line in attention)
    assert any("no longer in VAULT_COMPLETION_WEBHOOK_URLS (0123456789abcdef)" in line for line in attention)
    code, text = run_status(tracking_dsn, monkeypatch, capsys)
    assert "0 notice(s) delivered, 1 pending, 1 abandoned; 1 endpoint(s) configured" in text
    assert f"endpoint {fingerprint}: delivered 0, pending 0, abandoned 1; last error HTTP 503" in text
    assert "endpoint 0123456789abcdef (no longer configured)" in text
    assert_token_nowhere(tracking, out, text)


def test_status_of_no_notice(tracking: TrackingStore, tracking_dsn: str, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("OVH_S3_BUCKET_DOCUMENTS", "VAULT_COMPLETION_WEBHOOK_URLS"):
        monkeypatch.delenv(name, raising=False)
    _, text = run_status(tracking_dsn, monkeypatch, capsys)
    assert "no notice yet; no webhook (VAULT_COMPLETION_WEBHOOK_URLS not set)" in text


def test_configuration_is_checked_at_load_time_without_echoing_a_value(
    tracking: TrackingStore, receiver: CompletionReceiver, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("VAULT_COMPLETION_WEBHOOK_URLS", "VAULT_COMPLETION_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    settings, _ = load_settings()
    off = completion_webhooks_from_env(settings)
    assert not off.configured and off.urls == ""
    assert off.enqueue(tracking, "backup_complete", "b-1", {}) is False
    assert notices(tracking).rows() == [], "no URL configured: nothing is recorded"

    monkeypatch.setenv("VAULT_COMPLETION_WEBHOOK_URLS", f"{receiver.url}, ftp://hooks.example.invalid/{TOKEN}")
    monkeypatch.setenv("VAULT_COMPLETION_WEBHOOK_SECRET", SECRET)
    with pytest.raises(ConfigurationError) as bad_scheme:
        completion_webhooks_from_env(settings)
    message = str(bad_scheme.value)
    assert "VAULT_COMPLETION_WEBHOOK_URLS entry 2 of 2" in message and "http:// or https://" in message
    assert TOKEN not in message and "ftp" not in message and SECRET not in message

    monkeypatch.setenv("VAULT_COMPLETION_WEBHOOK_URLS", receiver.url)
    monkeypatch.delenv("VAULT_COMPLETION_WEBHOOK_SECRET")
    with pytest.raises(ConfigurationError) as no_secret:
        completion_webhooks_from_env(settings)
    assert "VAULT_COMPLETION_WEBHOOK_SECRET" in str(no_secret.value) and TOKEN not in str(no_secret.value)

    monkeypatch.setenv("VAULT_COMPLETION_WEBHOOK_SECRET", SECRET)
    on = completion_webhooks_from_env(settings)
    assert isinstance(on.urls, EnvVar) and on.urls.env_var_name == "VAULT_COMPLETION_WEBHOOK_URLS"
    assert isinstance(on.secret, EnvVar) and on.secret.env_var_name == "VAULT_COMPLETION_WEBHOOK_SECRET"
    assert on.max_attempts == 20 and on.retry_base_seconds == 30 and on.retry_max_seconds == 3600
    live = on.process_config_and_initialize()  # as Dagster does: the EnvVars resolved
    assert live.enqueue(tracking, "backup_complete", "b-1", {"backup_id": "b-1"}) is True
    assert live.enqueue(tracking, "backup_complete", "b-1", {"backup_id": "b-1"}) is False
    assert live.deliver(tracking).delivered == 1
    (got,) = receiver.all()
    assert got.verifies(SECRET) and got.json["subject"] == "b-1"
    assert TOKEN not in repr(live.notifiers())
