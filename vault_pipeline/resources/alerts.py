"""Alert delivery as a Dagster resource.

The webhook URL usually carries a token (Slack, Teams), so it only ever arrives as
`EnvVar("VAULT_ALERT_WEBHOOK_URL")`: the UI shows the variable's name, never its value. Without the
variable there is no webhook and alerts go to the structured log line only.
"""

from __future__ import annotations

import os
import urllib.parse

from dagster import ConfigurableResource, EnvVar

from vault_pipeline.alerting import AlertDispatcher, AlertStore, WebhookNotifier
from vault_pipeline.replication.tracking import TrackingStore
from vault_pipeline.settings import ConfigurationError

WEBHOOK_URL_VARIABLE = "VAULT_ALERT_WEBHOOK_URL"


class AlertsResource(ConfigurableResource):
    """Where alerts go: an optional JSON webhook (plus, always, the "vault_pipeline.alerts" log line)."""

    webhook_url: str | None = None
    timeout_seconds: float  # both from VaultSettings (VAULT_ALERT_*), where the defaults are declared
    # A tick spends at most this long delivering; whatever is left is sent on the next tick.
    delivery_budget_seconds: float

    def notifier(self) -> WebhookNotifier:
        return WebhookNotifier(self.webhook_url or None, timeout=self.timeout_seconds)

    def dispatcher(self, store: TrackingStore) -> AlertDispatcher:
        """Alerts share the tracking database (its pool, and its migrations create vault_secure.alerts)."""
        return AlertDispatcher(AlertStore(store.pool), self.notifier())


def alerts_resource_from_env(*, timeout_seconds: float, delivery_budget_seconds: float) -> AlertsResource:
    """The resource for definitions.py: webhook wired from the environment only when the variable is set.

    The URL is checked at load time (http or https) so a typo stops the code location instead of
    silently losing alerts; the message names the variable, never the value.
    """
    raw = os.environ.get(WEBHOOK_URL_VARIABLE, "").strip()
    if not raw:
        return AlertsResource(timeout_seconds=timeout_seconds, delivery_budget_seconds=delivery_budget_seconds)
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"invalid vault-pipeline configuration: {WEBHOOK_URL_VARIABLE} must be an http:// or https:// URL "
            "(value not shown: it may hold a token)")
    return AlertsResource(webhook_url=EnvVar(WEBHOOK_URL_VARIABLE), timeout_seconds=timeout_seconds,
                          delivery_budget_seconds=delivery_budget_seconds)
