"""A fault-injecting reverse proxy in front of one S3 server, for the fault suite and the soak benchmark.

    proxy = FaultProxy("http://127.0.0.1:8333").start()   # listens on 127.0.0.1:<free port>
    proxy.add(Rule("slowdown", methods={"PUT"}, probability=0.2))
    ... point the pipeline's endpoint at proxy.url ...
    proxy.injected   # what was injected: [(kind, method, path), ...]
    proxy.stop()

aiohttp serves the client side and forwards with an aiohttp ClientSession, streaming both bodies, so a
fault can happen mid-body. SigV4 stays valid: the path and query go upstream byte for byte and the Host
header the client signed (the proxy's host:port) is forwarded unchanged; SeaweedFS and the moto server
verify the signature against that header. Bodies are never decoded (auto_decompress off, Content-Encoding
passed through), so a gzip-encoded document reaches the client as stored.

Fault kinds (Rule.kind):
  error500          answer 500 InternalError (S3 XML body) without forwarding
  slowdown          answer 503 SlowDown (S3 XML body) without forwarding
  reset_request     read part of the request body (or none), then abort the connection (never forwarded)
  reset_response    forward, send the response headers and part of its body, then abort the connection
                    (for a PUT the server has applied the write: the client loses the answer)
  truncate          forward, send the response headers with the full Content-Length, part of the body, then
                    close the connection cleanly
  stall             forward, then send nothing for Rule.stall_seconds, then abort (past a read timeout)
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from vault_pipeline_tests.loop_thread import LoopThreadServer

KINDS = ("error500", "slowdown", "reset_request", "reset_response", "truncate", "stall")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
              "expect"}
CHUNK = 64 * 1024

ERROR_BODIES = {
    "error500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
}


@dataclass
class Rule:
    """Inject `kind` into matching requests: with `probability`, at most `count` times (None: no limit),
    after skipping the first `skip` matches. `methods` (None: all) and `path` (a regex searched in the
    path and query, None: all) select the requests."""

    kind: str
    methods: Iterable[str] | None = None
    path: str | None = None
    probability: float = 1.0
    count: int | None = None
    skip: int = 0
    stall_seconds: float = 5.0
    fraction: float = 0.5  # share of the body sent (reset_response, truncate) or read (reset_request)
    matched: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {KINDS}")
        self.methods = None if self.methods is None else {m.upper() for m in self.methods}
        self._path = None if self.path is None else re.compile(self.path)

    def matches(self, method: str, path_qs: str) -> bool:
        return ((self.methods is None or method in self.methods)
                and (self._path is None or self._path.search(path_qs) is not None))


@dataclass(frozen=True)
class Injected:
    kind: str
    method: str
    path: str
    at: float


class FaultProxy(LoopThreadServer):
    def __init__(self, upstream: str, name: str = "s3", seed: int = 0, host: str = "127.0.0.1") -> None:
        self.upstream = upstream.rstrip("/")
        self.name = name
        self.host = host
        self.rules: list[Rule] = []
        self.injected: list[Injected] = []
        self.requests = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.thread_name = f"fault-proxy-{name}"
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.port = self._sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ---- control, from any thread -------------------------------------------------------------------
    def add(self, *rules: Rule) -> FaultProxy:
        with self._lock:
            self.rules.extend(rules)
        return self

    def clear(self) -> None:
        """Faults off (what was injected stays recorded)."""
        with self._lock:
            self.rules = []

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(i.kind for i in self.injected)

    def _pick(self, method: str, path_qs: str) -> Rule | None:
        with self._lock:
            self.requests += 1
            for rule in self.rules:
                if not rule.matches(method, path_qs):
                    continue
                rule.matched += 1
                if rule.matched <= rule.skip or (rule.count is not None and rule.fired >= rule.count):
                    continue
                if self._random.random() >= rule.probability:
                    continue
                rule.fired += 1
                self.injected.append(Injected(rule.kind, method, path_qs, time.time()))
                return rule
        return None

    # ---- lifecycle ----------------------------------------------------------------------------------
    async def _start_server(self) -> None:
        self._session = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            connector=aiohttp.TCPConnector(limit=256), skip_auto_headers=("User-Agent", "Accept-Encoding",
                                                                          "Accept", "Content-Type"))
        app = web.Application(client_max_size=1 << 40)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1,
                                      auto_decompress=False)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock, ).start()

    async def _stop_server(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # ---- one request --------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path_qs = request.raw_path
        rule = self._pick(request.method, path_qs)
        kind = rule.kind if rule else None
        if kind in ERROR_BODIES:
            await request.read()  # the client sent its body; answer like a busy server
            status, code, message = ERROR_BODIES[kind]
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}'
                    f'</Message><Resource>{request.path}</Resource><RequestId>fault-proxy</RequestId></Error>')
            headers = {"Content-Type": "application/xml"}
            if status == 503:
                headers["Retry-After"] = "0"
            return web.Response(status=status, text=body, headers=headers)
        if kind == "reset_request":
            assert rule is not None
            wanted = int((request.content_length or 0) * rule.fraction)
            got = 0
            while got < wanted:
                chunk = await request.content.read(min(CHUNK, wanted - got))
                if not chunk:
                    break
                got += len(chunk)
            return self._abort(request)

        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = request.content if request.body_exists else None
        assert self._session is not None
        try:
            upstream = await self._session.request(
                request.method, self.upstream + path_qs, headers=headers, data=body, allow_redirects=False,
                skip_auto_headers=("Content-Type",))
        except (aiohttp.ClientError, OSError):
            return self._abort(request)
        async with upstream:
            if kind == "stall":
                assert rule is not None
                await asyncio.sleep(rule.stall_seconds)
                return self._abort(request)
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    response.headers.add(name, value)
            length = upstream.content_length
            if length is not None:
                response.content_length = length
            if kind in ("reset_response", "truncate") and request.method == "HEAD":
                return self._abort(request)
            if kind in ("reset_response", "truncate") and not length:
                return self._abort(request)  # nothing to cut: the answer is lost entirely
            await response.prepare(request)
            if request.method == "HEAD":
                await response.write_eof()
                return response
            limit = int(length * rule.fraction) if (rule and length) else None
            sent = 0
            async for chunk in upstream.content.iter_chunked(CHUNK):
                if limit is not None and sent + len(chunk) >= limit:
                    await response.write(chunk[: max(0, limit - sent)])
                    await response.drain() if hasattr(response, "drain") else None
                    if kind == "truncate":
                        assert request.transport is not None
                        request.transport.close()
                        return response
                    return self._abort(request)
                await response.write(chunk)
                sent += len(chunk)
            await response.write_eof()
            return response

    @staticmethod
    def _abort(request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError
