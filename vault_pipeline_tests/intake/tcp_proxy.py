"""A TCP forwarding proxy for the tests: plain sockets relayed byte for byte, no protocol code.

    with TcpProxy("127.0.0.1", server_port) as proxy:
        fired = proxy.at_byte(4 * MiB, cut=True)   # drop the first connection that relays 4 MiB to its client
        ... connect to proxy.port ...

It runs its own event loop in a daemon thread. A trigger counts the bytes a connection relayed from the server
to its client (downstream); the first connection to reach the count fires it, once: the bytes before the count
are forwarded, then `action` runs (in the proxy's thread, while that connection's relay waits), then the
connection is either cut (both sockets reset, as a network failure would) or relayed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

CHUNK = 64 * 1024


@dataclass
class _Trigger:
    at: int
    action: Callable[[], None] | None
    cut: bool
    fired: threading.Event = field(default_factory=threading.Event)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), not an orderly FIN: the peer sees the connection break."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """Relays connections accepted on 127.0.0.1:`port` to `target_host`:`target_port`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host, self.target_port = target_host, target_port
        self.port = 0
        self.connections = 0
        self.cuts = 0
        self.bytes_down = 0  # relayed from the server to clients, all connections
        self._trigger: _Trigger | None = None
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> TcpProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, "127.0.0.1", 0), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def at_byte(self, count: int, action: Callable[[], None] | None = None, *, cut: bool = False) -> threading.Event:
        """Arm the trigger (replacing any unfired one); the event is set once it has fired."""
        trigger = _Trigger(count, action, cut)
        with self._lock:
            self._trigger = trigger
        return trigger.fired

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers |= {client_writer, server_writer}
        pumps = [asyncio.create_task(self._pump(client_reader, server_writer, None)),
                 asyncio.create_task(self._pump(server_reader, client_writer, (client_writer, server_writer)))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            for writer in (client_writer, server_writer):
                self._writers.discard(writer)
                writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    downstream: tuple[asyncio.StreamWriter, asyncio.StreamWriter] | None) -> None:
        relayed = 0
        while data := await reader.read(CHUNK):
            if downstream is not None:
                trigger = self._due(relayed, len(data))
                if trigger is not None:
                    before = trigger.at - relayed
                    writer.write(data[:before])
                    await writer.drain()
                    relayed += before
                    self.bytes_down += before
                    data = data[before:]
                    if trigger.action is not None:
                        trigger.action()
                    trigger.fired.set()
                    if trigger.cut:
                        self.cuts += 1
                        for end in downstream:
                            _reset(end)
                        return
                relayed += len(data)
                self.bytes_down += len(data)
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    def _due(self, relayed: int, incoming: int) -> _Trigger | None:
        """The armed trigger if this connection reaches its count with the incoming bytes (then disarmed)."""
        with self._lock:
            trigger = self._trigger
            if trigger is None or not relayed < trigger.at <= relayed + incoming:
                return None
            self._trigger = None
            return trigger
