"""A real local webhook receiver: an HTTP server on 127.0.0.1 that records every POST body."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

TOKEN = "T0VAULT/B0ALERTS/s3cr3t-w3bh00k-t0k3n"  # the path part that a real incoming webhook keeps secret


@dataclass
class WebhookReceiver:
    port: int
    status: int = 200  # what the receiver answers; set to 500 to play a webhook that is down
    bodies: list[dict[str, Any]] = field(default_factory=list)  # accepted POSTs (2xx answers only)
    refused: int = 0  # POSTs answered with an error status
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/{TOKEN}"

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [b for b in self.bodies if event is None or b.get("event") == event]


class QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], name: str) -> Iterator[int]:
    """An HTTP server on a free loopback port (yielded), answering with `handler` in a thread until the end."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(port=0)

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            ok = self.path == f"/services/{TOKEN}" and receiver.status < 300
            with receiver.lock:
                if ok:
                    receiver.bodies.append(json.loads(body))
                else:
                    receiver.refused += 1
            self.send_response(receiver.status if self.path == f"/services/{TOKEN}" else 404)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if ok else b"no")

    with serving(Handler, "webhook-receiver") as receiver.port:
        yield receiver


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_concurrently(dispatchers: list[Any], alert_for: Any, observed_at: Any) -> list[int]:
    """Every dispatcher raises `alert_for(i)` at the same instant, then all deliver at the same instant (as
    sensors of several processes would); the indexes whose raise_alert produced a notification."""
    barrier = threading.Barrier(len(dispatchers))
    notified: list[int] = []

    def race(dispatcher: Any, i: int) -> None:
        barrier.wait()
        if dispatcher.raise_alert(alert_for(i), observed_at=observed_at) is not None:
            notified.append(i)
        barrier.wait()
        dispatcher.deliver_pending()

    threads = [threading.Thread(target=race, args=(d, i)) for i, d in enumerate(dispatchers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return notified

