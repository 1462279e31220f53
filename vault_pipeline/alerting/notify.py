"""Delivery: a JSON POST to the webhook, and one structured log line per alert.

The webhook URL is a secret (Slack and Teams put the token in the path), so it never appears in a log
line, an error message or anything stored: errors are described by status code or exception class and
any trace of the URL is masked. A webhook that is down must never break the pipeline: `post` never
raises, it reports.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ALERT_LOGGER_NAME = "vault_pipeline.alerts"
alert_log = logging.getLogger(ALERT_LOGGER_NAME)
USER_AGENT = "vault-pipeline-alerts/1"
RETRYABLE_STATUS = frozenset({408, 425, 429})  # plus every 5xx


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    attempts: int
    status: int | None = None  # last HTTP status received
    error: str | None = None  # safe to log: never holds the URL


def log_alert(payload: Mapping[str, Any]) -> None:
    """Write the alert as ONE JSON line on logger "vault_pipeline.alerts" (payloads never hold the URL).

    Alerts at WARNING/ERROR level so a log pipeline can route them; recoveries at INFO.
    """
    level = logging.INFO if payload.get("event") == "recovery" else (
        logging.ERROR if str(payload.get("severity", "ERROR")).upper() == "ERROR" else logging.WARNING)
    alert_log.log(level, json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str))


class WebhookNotifier:
    """POSTs alert payloads as JSON. `url=None` means no webhook: the log line is the only channel.

    A few quick attempts (short backoff) ride out a blip; a webhook that stays down is left to the
    caller's next tick, which retries the stored notification. 5xx, 408/425/429 and connection errors
    are retried; another 4xx is not (the same request would be refused again).
    """

    def __init__(
        self, url: str | None, timeout: float = 5.0, *, attempts: int = 3, backoff_seconds: float = 0.25,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url = url.strip() if url and url.strip() else None
        if self._url is not None and urllib.parse.urlsplit(self._url).scheme.lower() not in ("http", "https"):
            raise ValueError("the alert webhook URL must start with http:// or https://")  # not echoed: secret
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff_seconds = backoff_seconds
        self._sleep = sleep

    @property
    def configured(self) -> bool:
        return self._url is not None

    def __repr__(self) -> str:  # never the URL, even in a traceback's locals
        return f"WebhookNotifier(configured={self.configured}, timeout={self.timeout})"

    def post(
        self, payload: Mapping[str, Any], *, attempts: int | None = None,
        headers: Callable[[bytes], Mapping[str, str]] | None = None,
    ) -> DeliveryResult:
        """Deliver one payload (`attempts` overrides the configured count); never raises.

        `headers(body)`, called before each attempt, gives extra headers for the exact body sent (a signature
        and its timestamp: see alerting/completion.py); they override the default ones of the same name.
        """
        attempts = max(1, attempts or self.attempts)
        if self._url is None:
            return DeliveryResult(delivered=False, attempts=0, error="no webhook configured")
        try:
            body = json.dumps(payload, default=str).encode("utf-8")
        except (TypeError, ValueError) as exc:
            return DeliveryResult(delivered=False, attempts=0, error=f"payload not JSON: {type(exc).__name__}")
        status: int | None = None
        error: str | None = None
        attempt = 0
        for attempt in range(1, attempts + 1):
            retry = False
            try:
                status = self._send(body, headers(body) if headers is not None else {})
                if 200 <= status < 300:
                    return DeliveryResult(delivered=True, attempts=attempt, status=status)
                error, retry = f"HTTP {status}", status >= 500 or status in RETRYABLE_STATUS
            except Exception as exc:  # connection refused, DNS, TLS, timeout, anything: report, never raise
                status, error, retry = None, self._describe(exc), True
            if not retry or attempt == attempts:
                break
            self._sleep(self.backoff_seconds * 2 ** (attempt - 1))
        return DeliveryResult(delivered=False, attempts=attempt, status=status, error=error)

    def _send(self, body: bytes, extra_headers: Mapping[str, str]) -> int:
        assert self._url is not None
        request = urllib.request.Request(
            self._url, data=body, method="POST",
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT, **extra_headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read(65536)
                return int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code)

    def _describe(self, exc: BaseException) -> str:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        text = f"{type(exc).__name__}: {reason}"
        return self.redact(text)[:300]

    def redact(self, text: str) -> str:
        """Mask the URL and each part of it that could carry the token (path, query, user info)."""
        if not self._url:
            return text
        parts = urllib.parse.urlsplit(self._url)
        secrets = [self._url, parts.path, parts.query, parts.netloc if "@" in parts.netloc else "",
                   urllib.parse.quote(parts.path), parts.path.strip("/")]
        for secret in sorted((s for s in secrets if s and s != "/"), key=len, reverse=True):
            text = text.replace(secret, "<webhook>")
        return text
