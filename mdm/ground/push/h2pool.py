"""A small pool of HTTP/2 client connections (TLS, ALPN "h2") on asyncio, for APNs.

Why not httpx here: an APNs push is one tiny POST, and httpx/httpcore spend about 2 ms of CPU on
each (request models, a pool lookup per request that retries while an HTTP/2 connection is busy,
one socket write per frame), which caps one process at a few hundred pushes per second. This
module drives the `h2` state machine directly: a push is a HEADERS and a DATA frame appended to
the connection's buffer, every frame queued in one turn of the event loop goes out in one write,
and one reader task per connection hands each answer to the push that waits for it.

Concurrency on a connection is bounded by the server's SETTINGS_MAX_CONCURRENT_STREAMS (APNs starts
low and raises it once the certificate is checked) and by the pool's own cap; when every open
connection is full, another is opened, up to `size`. Light traffic therefore stays on one
connection, as Apple asks; only a connection the server limits brings a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

_READ_SIZE = 65536
# Above this many bytes waiting in the socket's buffer, a sender waits for it to drain.
_HIGH_WATER = 1 << 20


class ConnectError(OSError):
    """The TCP/TLS connection could not be opened, or the server does not speak HTTP/2."""


class ConnectionLost(OSError):
    """The connection closed (or was told to go away) before the answer came."""


@dataclass
class H2Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class _Stream:
    answer: asyncio.Future[H2Response]
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)


class Signal:
    """Wakes every task waiting at the moment it fires (an Event that cannot miss a set/clear)."""

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    def fire(self) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_result(None)
        self._future = None

    async def wait(self) -> None:
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        # Shielded: one waiter cancelled (timed out) must not cancel the others' wake-up.
        await asyncio.shield(self._future)


class H2Connection:
    """One TLS connection speaking HTTP/2; `request` may be called by many tasks at once."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        authority: str,
        on_change: Callable[[], None] | None = None,
        on_release: Callable[[], None] | None = None,
    ) -> None:
        """`on_release` is called when a stream ends; `on_change` when more may fit (settings, close)."""
        self._reader = reader
        self._writer = writer
        self._authority = authority
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self._streams: dict[int, _Stream] = {}
        self._reserved = 0  # streams promised to senders, opened or about to be
        self._flush_scheduled = False
        # Fired when the server's settings or window change, or the connection closes.
        self.changed = Signal()
        self._on_change = on_change
        self._on_release = on_release
        self._settings_received = asyncio.Event()
        self.closed = False  # no new streams: the socket closed, or the server sent GOAWAY
        self.last_used = time.monotonic()
        self._h2.initiate_connection()
        self._flush()
        self.reader = asyncio.ensure_future(self._read_loop())

    @classmethod
    async def open(
        cls,
        url: str,
        context: ssl.SSLContext,
        timeout: float,
        on_change: Callable[[], None] | None = None,
        on_release: Callable[[], None] | None = None,
    ) -> H2Connection:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 443
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=context, server_hostname=host, limit=_READ_SIZE * 4
                )
        except (OSError, TimeoutError) as exc:
            raise ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
            writer.close()
            raise ConnectError(f"{host}:{port} did not negotiate HTTP/2 (ALPN h2)")
        authority = host if port == 443 else f"{host}:{port}"
        connection = cls(reader, writer, authority, on_change, on_release)
        # The server's first SETTINGS say how many streams it takes; sending before them could
        # open more than it allows (APNs starts with a low limit).
        try:
            async with asyncio.timeout(timeout):
                await connection._settings_received.wait()
        except TimeoutError as exc:
            await connection.aclose()
            raise ConnectError(f"{host}:{port} sent no HTTP/2 settings") from exc
        if connection.closed:
            await connection.aclose()
            raise ConnectError(f"{host}:{port} closed the connection at once")
        return connection

    # -- capacity -------------------------------------------------------------------------------

    def free_streams(self, cap: int) -> int:
        """How many more streams this connection may open now (0 when closed)."""
        if self.closed:
            return 0
        limit = min(cap, self._h2.remote_settings.max_concurrent_streams)
        return max(0, limit - self._reserved)

    @property
    def in_flight(self) -> int:
        return self._reserved

    def reserve(self) -> None:
        self._reserved += 1

    def release(self) -> None:
        self._reserved -= 1
        if self._on_release is not None:
            self._on_release()

    def _fire_changed(self) -> None:
        self.changed.fire()
        if self._on_change is not None:
            self._on_change()

    # -- requests -------------------------------------------------------------------------------

    async def request(self, path: str, headers: list[tuple[str, str]], body: bytes) -> H2Response:
        """POST `body` to `path` on a stream the caller reserved (`reserve`); releases it."""
        try:
            if self.closed:
                raise ConnectionLost("connection closed")
            while self._h2.outbound_flow_control_window < len(body):
                await self.changed.wait()  # the server has not acknowledged enough data yet
                if self.closed:
                    raise ConnectionLost("connection closed")
            loop = asyncio.get_running_loop()
            stream_id = self._h2.get_next_available_stream_id()
            stream = _Stream(loop.create_future())
            self._streams[stream_id] = stream
            request_headers = [
                (":method", "POST"),
                (":scheme", "https"),
                (":authority", self._authority),
                (":path", path),
                *headers,
                ("content-length", str(len(body))),
            ]
            try:
                self._h2.send_headers(stream_id, request_headers)
                self._h2.send_data(stream_id, body, end_stream=True)
            except h2.exceptions.ProtocolError as exc:
                self._streams.pop(stream_id, None)
                raise ConnectionLost(f"HTTP/2 refused the request: {exc}") from exc
            self.last_used = time.monotonic()
            self._schedule_flush()
            if self._writer.transport.get_write_buffer_size() > _HIGH_WATER:
                await self._writer.drain()
            try:
                return await asyncio.shield(stream.answer)
            except asyncio.CancelledError:
                # Timed out or cancelled: tell the server we no longer want this stream.
                if self._streams.pop(stream_id, None) is not None and not self.closed:
                    with contextlib.suppress(h2.exceptions.ProtocolError):
                        self._h2.reset_stream(stream_id)
                        self._schedule_flush()
                raise
        finally:
            self.release()

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.close_connection()
            self._flush()
        self._writer.close()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader
        self._fail_all(ConnectionLost("connection closed by the client"))

    # -- internals ------------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        # Every frame queued in this turn of the loop leaves in one write.
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self._h2.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    async def _read_loop(self) -> None:
        error: BaseException = ConnectionLost("the server closed the connection")
        try:
            while True:
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    break
                try:
                    events = self._h2.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    error = ConnectionLost(f"HTTP/2 protocol error: {exc}")
                    break
                for event in events:
                    self._on_event(event)
                self._flush()
        except (OSError, ssl.SSLError) as exc:
            error = ConnectionLost(f"{type(exc).__name__}: {exc}")
        finally:
            self.closed = True
            self._settings_received.set()
            self._fail_all(error)
            self._writer.close()

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                for raw_name, raw_value in event.headers:
                    name, value = _text(raw_name), _text(raw_value)
                    if name == ":status":
                        stream.status = int(value)
                    else:
                        stream.headers[name] = value
        elif isinstance(event, h2.events.DataReceived):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.body.extend(event.data)
            self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None and not stream.answer.done():
                stream.answer.set_result(H2Response(stream.status, stream.headers, bytes(stream.body)))
        elif isinstance(event, h2.events.StreamReset):
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None and not stream.answer.done():
                stream.answer.set_exception(
                    ConnectionLost(f"stream reset by the server ({event.error_code})")
                )
        elif isinstance(event, h2.events.ConnectionTerminated):
            # GOAWAY: streams after the last one the server took were never processed; retry them.
            self.closed = True
            last = event.last_stream_id if event.last_stream_id is not None else 0
            for stream_id in [s for s in self._streams if s > last]:
                stream = self._streams.pop(stream_id)
                if not stream.answer.done():
                    stream.answer.set_exception(ConnectionLost("the server sent GOAWAY"))
            self._fire_changed()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._settings_received.set()
            self._fire_changed()
        elif isinstance(event, h2.events.WindowUpdated):
            self.changed.fire()

    def _fail_all(self, error: BaseException) -> None:
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            if not stream.answer.done():
                stream.answer.set_exception(error)
        self._fire_changed()


class H2Pool:
    """Up to `size` HTTP/2 connections to one origin, opened as the load needs them: a new one only
    when every open one is at its stream limit, and one at a time."""

    def __init__(
        self,
        url: str,
        context: ssl.SSLContext,
        *,
        size: int = 1,
        streams_per_connection: int = 1000,
        timeout: float = 10.0,
        idle_seconds: float = 600.0,
    ) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        if streams_per_connection < 1:
            raise ValueError("streams_per_connection must be at least 1")
        context.set_alpn_protocols(["h2"])
        self._url = url
        self._context = context
        self.size = size
        self._cap = streams_per_connection
        self._timeout = timeout
        self._idle_seconds = idle_seconds
        self._connections: list[H2Connection] = []
        self._draining: set[H2Connection] = set()
        self._opening: asyncio.Task[H2Connection] | None = None
        # Tasks waiting for a free stream, first come first served: a stream that ends wakes one
        # of them (not all: a thousand pushes waiting must not all wake for every answer).
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def connections(self) -> list[H2Connection]:
        return [c for c in self._connections if not c.closed]

    async def request(self, path: str, headers: list[tuple[str, str]], body: bytes) -> H2Response:
        """Send on the connection with the most free streams; raises OSError without an answer
        (TimeoutError when the answer takes longer than `timeout`).

        Waiting here for a free stream is not timed: it is our own queue, not APNs failing, and
        the pushes ahead of it are (a push timed out while queued would be sent twice)."""
        connection = await self._acquire()
        async with asyncio.timeout(self._timeout):
            return await connection.request(path, headers, body)

    async def _acquire(self) -> H2Connection:
        while True:
            if self._closed:
                raise ConnectionLost("the pool is closed")
            self._prune()
            best = max(self._connections, key=lambda c: c.free_streams(self._cap), default=None)
            if best is not None and best.free_streams(self._cap) > 0:
                best.reserve()
                return best
            if self._opening is None and len(self._connections) < self.size:
                self._opening = asyncio.ensure_future(self._open())
            if self._opening is not None:
                opening = self._opening
                try:
                    await asyncio.shield(opening)
                except OSError:
                    if not self._connections:
                        raise  # nothing to fall back on: this attempt gets no answer
                    await self._wait()  # use the open ones; try opening again later
                continue
            await self._wait()  # every connection is full: wait for a stream to end

    async def _wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._wake_one()  # woken, but timed out before taking the stream: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all(self) -> None:
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _open(self) -> H2Connection:
        try:
            connection = await H2Connection.open(
                self._url, self._context, self._timeout, self._wake_all, self._wake_one
            )
            self._connections.append(connection)
            return connection
        finally:
            self._opening = None
            self._wake_all()

    def _prune(self) -> None:
        """Forget closed connections; close ones idle too long (a path a NAT may have cut)."""
        now = time.monotonic()
        for connection in list(self._connections):
            idle = connection.in_flight == 0 and now - connection.last_used > self._idle_seconds
            if connection.closed or idle:
                self._connections.remove(connection)
                # Answers still due on a connection told to go away are awaited, then it closes.
                self._draining.add(connection)
        for connection in list(self._draining):
            if connection.in_flight == 0:
                self._draining.discard(connection)
                task = asyncio.ensure_future(connection.aclose())
                task.add_done_callback(_ignore_result)

    def reader_tasks(self) -> list[asyncio.Task[None]]:
        """The tasks that read each connection: they run as long as it is open."""
        return [c.reader for c in (*self._connections, *self._draining)]

    async def aclose(self) -> None:
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
            with contextlib.suppress(BaseException):
                await self._opening
        connections = [*self._connections, *self._draining]
        self._connections, self._draining = [], set()
        await asyncio.gather(*(c.aclose() for c in connections), return_exceptions=True)
        self._wake_all()


def _text(value: str | bytes) -> str:
    # h2 decodes header names and values with the configured header_encoding; typed as either.
    return value.decode() if isinstance(value, bytes) else value


def _ignore_result(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()
