"""A real completion webhook receiver on loopback: records every POST (headers and exact body bytes), answers
what the test scripts (e.g. 500 first), optionally slowly, and checks signatures as a receiver would."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from vault_pipeline.alerting.completion import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from vault_pipeline_tests.alerting.conftest import TOKEN, QuietHandler, serving

SECRET = "completion-signing-secret-for-tests"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-case names (HTTP header names are case-insensitive)
    body: bytes
    answered: int

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def key(self) -> str:
        return self.json["idempotency_key"]

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def verifies(self, secret: str = SECRET) -> bool:
        return verify_signature(secret, self.header(TIMESTAMP_HEADER), self.body, self.header(SIGNATURE_HEADER))


@dataclass
class CompletionReceiver:
    port: int = 0
    script: list[int] = field(default_factory=list)  # statuses answered first, in order; then `status`
    status: int = 200
    delay_seconds: float = 0.0  # a slow receiver widens the window two deliverers could race in
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{TOKEN}"

    def answer(self) -> int:
        with self.lock:
            return self.script.pop(0) if self.script else self.status

    def accepted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.answered < 300]

    def all(self) -> list[Received]:
        with self.lock:
            return list(self.requests)


@pytest.fixture
def receiver() -> Iterator[CompletionReceiver]:
    state = CompletionReceiver()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if state.delay_seconds:
                time.sleep(state.delay_seconds)  # plays a receiver's processing time, not a synchronisation
            status = state.answer() if self.path == f"/hooks/{TOKEN}" else 404
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                state.requests.append(Received(self.path, headers, body, status))
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if status < 300 else b"no")

    with serving(Handler, "completion-receiver") as state.port:
        yield state


__all__ = ["KEY_HEADER", "SECRET", "CompletionReceiver", "Received", "receiver"]
