"""Alerting, plain Python (no Dagster): one alert per distinct failure, a recovery notice when fixed.

`payload` builds the messages, `state` keeps one row per failure key in PostgreSQL (atomic transitions,
delivery state), `notify` posts to the webhook and writes the structured log line, `dispatch` ties them
together for the sensors.
"""

from vault_pipeline.alerting.dispatch import AlertDispatcher, DeliveryReport
from vault_pipeline.alerting.notify import ALERT_LOGGER_NAME, DeliveryResult, WebhookNotifier
from vault_pipeline.alerting.payload import Alert
from vault_pipeline.alerting.state import AlertStore, Notification

__all__ = [
    "ALERT_LOGGER_NAME",
    "Alert",
    "AlertDispatcher",
    "AlertStore",
    "DeliveryReport",
    "DeliveryResult",
    "Notification",
    "WebhookNotifier",
]
