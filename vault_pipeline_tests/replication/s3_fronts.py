"""Local servers that stand where AWS's own machinery stands, for the fast path's real-world tests.

* `S3Front`: an aiohttp server (plain HTTP or TLS) in front of a real S3 server. It records every request
  (method, Host, raw path, headers, body) and either answers it itself, when its `answer` function returns
  a `Reply` (a redirect, a clock-skew error, an S3 answer of its own), or forwards it upstream byte for
  byte with the Host header the client signed, so that the upstream server verifies the client's SigV4
  signature, not one of ours.
* `ForwardProxy`: an HTTP forward proxy (absolute-URI requests for http://, CONNECT tunnels for https://)
  that records what went through it.
* `botocore_authorization`: the Authorization header botocore's own SigV4 signer computes for a recorded
  request, to check the signature another client sent.
"""

from __future__ import annotations

import datetime as dt
import http.client
import http.server
import select
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from unittest import mock
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web
from botocore.auth import SIGV4_TIMESTAMP, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from vault_pipeline_tests.loop_thread import LoopThreadServer

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
              "expect"}


@dataclass(frozen=True)
class Seen:
    """One request as it reached the front."""

    method: str
    host: str
    path: str  # raw path and query, as sent
    headers: dict[str, str]  # names lower-cased
    body: bytes
    scheme: str = "http"

    @property
    def _credential(self) -> list[str]:
        # AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/s3/aws4_request, SignedHeaders=..., Signature=...
        return self.auth_fields["Credential"].split("/")

    @property
    def auth_fields(self) -> dict[str, str]:
        value = self.headers.get("authorization", "")
        assert value.startswith("AWS4-HMAC-SHA256 "), f"not a SigV4 request: {value!r}"
        return dict(part.strip().split("=", 1) for part in value[len("AWS4-HMAC-SHA256 "):].split(","))

    @property
    def access_key(self) -> str:
        return self._credential[0]

    @property
    def region(self) -> str:
        return self._credential[2]

    @property
    def signed_headers(self) -> list[str]:
        return self.auth_fields["SignedHeaders"].split(";")

    @property
    def amz_date(self) -> dt.datetime:
        return dt.datetime.strptime(self.headers["x-amz-date"], SIGV4_TIMESTAMP).replace(tzinfo=dt.UTC)


@dataclass
class Reply:
    """An answer of the front's own instead of the upstream's."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def s3_error(code: str, message: str, **fields: str) -> bytes:
    """An S3 XML error body, as AWS writes them."""
    extra = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in fields.items())
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{escape(message)}'
            f"</Message>{extra}<RequestId>front</RequestId><HostId>front</HostId></Error>").encode()


def botocore_authorization(seen: Seen, access_key: str, secret_key: str, token: str | None = None) -> str:
    """The Authorization header botocore's S3 SigV4 signer gives the recorded request (the headers the client
    signed, its method, Host, path and query), signed at the client's X-Amz-Date for the client's region.
    botocore adds the session token header itself when `token` is given, and signs the payload hash the
    client declared (UNSIGNED-PAYLOAD or the body's SHA-256, recomputed from the body received)."""
    headers = {name: seen.headers[name] for name in seen.signed_headers if name in seen.headers}
    request = AWSRequest(method=seen.method, url=f"{seen.scheme}://{seen.host}{seen.path}", headers=headers,
                         data=seen.body)
    unsigned = seen.headers.get("x-amz-content-sha256") == "UNSIGNED-PAYLOAD"
    request.context["client_config"] = Config(s3={"payload_signing_enabled": not unsigned})
    signer = S3SigV4Auth(Credentials(access_key, secret_key, token), "s3", seen.region)
    # botocore signs at "now" (botocore.auth.get_current_datetime): pinned to the date the client signed at.
    with mock.patch("botocore.auth.get_current_datetime", return_value=seen.amz_date.replace(tzinfo=None)):
        signer.add_auth(request)
    return str(request.headers["Authorization"])


class S3Front(LoopThreadServer):
    """A recording front on 127.0.0.1 (see the module docstring). `url` names it by `host_name`, which
    must resolve to 127.0.0.1 (and match the TLS certificate when `ssl_context` is given)."""

    def __init__(self, upstream: str | None = None, answer: Callable[[Seen], Reply | None] | None = None, *,
                 ssl_context: ssl.SSLContext | None = None, host_name: str = "127.0.0.1") -> None:
        self.upstream = upstream.rstrip("/") if upstream else None
        self.answer = answer
        self.ssl_context = ssl_context
        self.host_name = host_name
        self.seen: list[Seen] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.thread_name = "s3-front"
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host_name}:{self.port}"

    async def _start_server(self) -> None:
        self._session = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=60),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"))
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1, auto_decompress=False)
        await runner.setup()
        await web.SockSite(runner, self._sock, ssl_context=self.ssl_context).start()
        self._runner = runner

    async def _stop_server(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = Seen(request.method, request.headers.get("Host", ""), request.raw_path,
                    {k.lower(): v for k, v in request.headers.items()}, body,
                    "https" if self.ssl_context else "http")
        self.seen.append(seen)
        reply = self.answer(seen) if self.answer else None
        if reply is None:
            if self.upstream is None:
                return web.Response(status=501, text="no upstream")
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
            async with self._session.request(request.method, self.upstream + request.raw_path, headers=headers,
                                             data=body if body else None, allow_redirects=False,
                                             skip_auto_headers=("Content-Type",)) as upstream:
                reply = Reply(upstream.status, {k: v for k, v in upstream.headers.items()
                                                if k.lower() not in HOP_BY_HOP}, await upstream.read())
        response = web.StreamResponse(status=reply.status)
        for name, value in reply.headers.items():
            response.headers.add(name, value)
        if "Content-Length" not in response.headers:
            response.content_length = len(reply.body)
        await response.prepare(request)
        if request.method != "HEAD":
            await response.write(reply.body)
        await response.write_eof()
        return response


class ForwardProxy:
    """An HTTP forward proxy on 127.0.0.1: absolute-URI requests are forwarded (Host unchanged), CONNECT
    opens a tunnel. `seen` holds (method, request target) of every request it received."""

    def __init__(self) -> None:
        proxy = self
        self.seen: list[tuple[str, str]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_CONNECT(self) -> None:
                proxy.seen.append(("CONNECT", self.path))
                host, port = self.path.rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)), timeout=30)
                self.send_response(200, "Connection Established")
                self.end_headers()
                sockets = [self.connection, upstream]
                while True:
                    readable, _, _ = select.select(sockets, [], [], 30)
                    if not readable:
                        break
                    for sock in readable:
                        data = sock.recv(65536)
                        if not data:
                            upstream.close()
                            self.close_connection = True
                            return
                        (upstream if sock is self.connection else self.connection).sendall(data)

            def _forward(self) -> None:
                proxy.seen.append((self.command, self.path))
                target = urllib.parse.urlsplit(self.path)
                if target.scheme != "http":
                    self.send_error(400, "absolute http:// URI expected")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                connection = http.client.HTTPConnection(target.netloc, timeout=60)
                path = target.path + (f"?{target.query}" if target.query else "")
                connection.request(self.command, path, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", answer.getheader("Content-Length") or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                connection.close()

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _forward

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="forward-proxy", daemon=True)

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
