"""Completion webhooks as a Dagster resource (issue 17; alerting/completion.py does the work).

Both the URLs and the signing secret are secrets (a URL often carries a token), so they only ever arrive as
`EnvVar("VAULT_COMPLETION_WEBHOOK_URLS")` and `EnvVar("VAULT_COMPLETION_WEBHOOK_SECRET")`: the UI shows the
variables' names, never their values. Without URLs nothing is recorded and nothing is sent. The URLs are
checked at load time (each http:// or https://, and a secret to sign with) so that a typo stops the code
location instead of silently losing notices; the messages name the variable, never the value.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from typing import Any

from dagster import ConfigurableResource, EnvVar

from vault_pipeline.alerting import WebhookNotifier
from vault_pipeline.alerting.completion import (
    CompletionDeliveryReport,
    CompletionNotices,
    Retry,
    endpoint_fingerprint,
    split_urls,
)
from vault_pipeline.replication.tracking import TrackingStore
from vault_pipeline.settings import ConfigurationError, VaultSettings

URLS_VARIABLE = "VAULT_COMPLETION_WEBHOOK_URLS"
SECRET_VARIABLE = "VAULT_COMPLETION_WEBHOOK_SECRET"
NOT_CONFIGURED = f"no completion webhook: {URLS_VARIABLE} is not set"


def check_urls(raw: str, secret: str) -> list[str]:
    """The URLs of `raw`, or ConfigurationError naming the variable and the entry's position, never a value."""
    urls = split_urls(raw)
    for position, url in enumerate(urls, start=1):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(
                f"invalid vault-pipeline configuration: {URLS_VARIABLE} entry {position} of {len(urls)} is not an "
                "http:// or https:// URL (value not shown: it may hold a token)")
    if urls and not secret.strip():
        raise ConfigurationError(
            f"invalid vault-pipeline configuration: {URLS_VARIABLE} is set but {SECRET_VARIABLE} is not: every "
            "completion notice is signed with it (HMAC-SHA256), a receiver cannot trust an unsigned one")
    return urls


def completion_webhooks_configured() -> bool:
    """Whether VAULT_COMPLETION_WEBHOOK_URLS names at least one URL (the sensors' default status)."""
    return bool(split_urls(os.environ.get(URLS_VARIABLE, "")))


class CompletionWebhooksResource(ConfigurableResource):
    """Where completion notices go: the endpoints of VAULT_COMPLETION_WEBHOOK_URLS, signed with the secret."""

    urls: str = ""  # comma-separated; EnvVar when set
    secret: str = ""  # EnvVar when set
    timeout_seconds: float  # the tunables come from VaultSettings (VAULT_COMPLETION_*), where defaults live
    max_attempts: int
    retry_base_seconds: float
    retry_max_seconds: float
    # A tick spends at most this long delivering (plus one POST); what is left goes on the next tick.
    delivery_budget_seconds: float = 15.0

    @property
    def configured(self) -> bool:
        return bool(split_urls(self.urls))

    def notifiers(self) -> dict[str, WebhookNotifier]:
        """fingerprint -> notifier, for every configured URL (checked again: the environment may differ)."""
        return {endpoint_fingerprint(url): WebhookNotifier(url, timeout=self.timeout_seconds, attempts=1)
                for url in check_urls(self.urls, self.secret)}

    def notices(self, store: TrackingStore) -> CompletionNotices:
        """The notices table, on the tracking database's pool (its migrations create the table)."""
        return CompletionNotices(
            store.pool,
            retry=Retry(max_attempts=self.max_attempts, base_seconds=self.retry_base_seconds,
                        max_seconds=self.retry_max_seconds),
            # one attempt of one POST, plus room for the database round trips
            lease_seconds=2 * self.timeout_seconds + 10,
        )

    def enqueue(
        self, store: TrackingStore, event: str, subject: str, facts: Mapping[str, Any], *,
        vault: Mapping[str, str] | None = None,
    ) -> bool:
        """Queue one completion for every configured endpoint; True if it is new. No URL configured: nothing
        is recorded (False). The same (event, subject) queued again, by anyone, is not sent again."""
        if not self.configured:
            return False
        return self.notices(store).enqueue(event, subject, facts, list(self.notifiers()), vault=vault)

    def deliver(
        self, store: TrackingStore, budget_seconds: float | None = None, *, limit: int = 200,
    ) -> CompletionDeliveryReport:
        """POST what is due within the budget (default: delivery_budget_seconds); never raises for an endpoint."""
        notifiers = self.notifiers() if self.configured else {}
        budget = self.delivery_budget_seconds if budget_seconds is None else budget_seconds
        return self.notices(store).deliver_due(notifiers, self.secret, budget_seconds=budget, limit=limit)


def completion_webhooks_from_env(settings: VaultSettings) -> CompletionWebhooksResource:
    """The resource for definitions.py: the URLs and the secret wired as EnvVar only when the URLs are set,
    and checked now (ConfigurationError naming the variable)."""
    tunables = {
        "timeout_seconds": settings.completion_webhook_timeout_seconds,
        "max_attempts": settings.completion_webhook_max_attempts,
        "retry_base_seconds": settings.completion_webhook_retry_base_seconds,
        "retry_max_seconds": settings.completion_webhook_retry_max_seconds,
    }
    if not check_urls(os.environ.get(URLS_VARIABLE, ""), os.environ.get(SECRET_VARIABLE, "")):
        return CompletionWebhooksResource(**tunables)
    return CompletionWebhooksResource(urls=EnvVar(URLS_VARIABLE), secret=EnvVar(SECRET_VARIABLE), **tunables)
