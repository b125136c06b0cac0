"""A real HTTP/2 TLS server on loopback that stands in for APNs.

It speaks HTTP/2 (the `h2` library) over TLS with ALPN "h2", requires a client certificate signed
by a given CA, and records every push it receives. It answers like APNs: 200 with an `apns-id`
header, or an error status with a JSON `{"reason": ...}` body, and it rejects malformed requests
(wrong path or method, missing or foreign topic, bad headers, empty or oversized payload) the way
APNs does, so a client bug shows up as a failing test rather than a silent success.

Typical use (the `apns_server` fixture does the first and last line):

    server = start_apns_server(tmp_path)
    credentials = server.issue_client_credentials()      # a push certificate for a random topic
    client = ApnsClient(server.url, credentials, ca_file=server.ca_file)
    server.respond(token, 410, "Unregistered")            # per-token answer
    server.set_outage(503, count=2)                       # the next two requests get 503
    server.wait_for_pushes(1); server.pushes[0].payload   # -> {"mdm": "..."}
    server.stop()

The server runs its own asyncio loop in a daemon thread; every public method is thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mdm.ground.push.apns import PushCredentials
from tests.support import pki

MAX_PAYLOAD = 4096  # APNs limit for an MDM (non-VoIP) payload
_DEFAULT_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "BadPath",
    405: "MethodNotAllowed",
    410: "Unregistered",
    413: "PayloadTooLarge",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}
_PUSH_TYPES = {
    "alert",
    "background",
    "location",
    "voip",
    "complication",
    "fileprovider",
    "mdm",
    "liveactivity",
}


@dataclass(frozen=True)
class PushRecord:
    """One request the server received, and what it answered."""

    token: str  # from the path /3/device/<token>
    method: str
    path: str
    headers: dict[str, str]  # regular request headers, lower-case names (no pseudo-headers)
    body: bytes
    payload: Any  # the JSON-decoded body, None when it is not JSON
    client_subject: str  # RFC 4514 subject of the client certificate
    client_uid: str | None  # the subject UID (the topic of an APNs push certificate)
    connection_id: int  # 1, 2, ... in order of accepted TLS connections
    stream_id: int
    status: int  # the status the server answered
    reason: str | None  # the reason it answered (None for 200)
    apns_id: str
    received_monotonic: float  # time.monotonic() on receipt
    received_at: datetime  # real wall-clock time (deliberately not mdm.ground.clock, which tests move)

    @property
    def topic(self) -> str | None:
        return self.headers.get("apns-topic")

    @property
    def push_type(self) -> str | None:
        return self.headers.get("apns-push-type")

    @property
    def priority(self) -> str | None:
        return self.headers.get("apns-priority")

    @property
    def expiration(self) -> str | None:
        return self.headers.get("apns-expiration")


@dataclass
class _TokenAnswer:
    status: int
    reason: str | None
    remaining: int | None  # None: until cleared


@dataclass
class _Outage:
    status: int
    reason: str | None
    until: float | None  # monotonic deadline
    remaining: int | None
    retry_after: int | None


@dataclass
class _Connection:
    id: int
    subject: str
    uid: str | None
    h2: h2.connection.H2Connection
    writer: asyncio.StreamWriter
    streams: dict[int, tuple[list[tuple[str, str]], bytearray]] = field(default_factory=dict)
    in_flight: int = 0
    peak_in_flight: int = 0

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)


class ApnsTestServer:
    """An APNs stand-in; see the module docstring. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        client_ca_pem_path: str | Path,
        server_cert_pem_path: str | Path,
        server_key_pem_path: str | Path,
        *,
        ca_file: str | Path | None = None,
        client_ca: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
        host: str = "127.0.0.1",
        max_concurrent_streams: int = 1000,
        strict: bool = True,
    ) -> None:
        """`ca_file` is the CA that signed the server certificate (what clients must trust);
        `client_ca` (certificate and key) lets `issue_client_credentials` mint push certificates;
        `strict` makes the server refuse requests real APNs would refuse."""
        self.client_ca_file = str(client_ca_pem_path)
        self.ca_file = str(ca_file) if ca_file is not None else None
        self.client_ca = client_ca[0] if client_ca else None
        self._client_ca_key = client_ca[1] if client_ca else None
        self.host = host
        self.port = 0
        self.strict = strict
        self._max_streams = max_concurrent_streams
        self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        self._ssl.load_cert_chain(str(server_cert_pem_path), str(server_key_pem_path))
        self._ssl.load_verify_locations(cafile=self.client_ca_file)
        self._ssl.verify_mode = ssl.CERT_REQUIRED
        self._ssl.set_alpn_protocols(["h2"])

        self._lock = threading.Condition()
        self._pushes: list[PushRecord] = []
        self._answers: dict[str, _TokenAnswer] = {}
        self._outage: _Outage | None = None
        self._delay = 0.0
        self._tcp_connections = 0
        self._connections = 0
        self._open: dict[int, _Connection] = {}
        self._handshake_failures: list[str] = []
        self._errors: list[str] = []
        self._streams_in_flight = 0
        self._peak_streams_in_flight = 0
        self._peaks: dict[int, int] = {}
        self._connection_ids = itertools.count(1)

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False

    # lifecycle ---------------------------------------------------------------------------------

    def start(self) -> ApnsTestServer:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(ready, failure), name="apns-test-server", daemon=True
        )
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("APNs test server did not start within 10 s")
        if failure:
            raise RuntimeError("APNs test server failed to start") from failure[0]
        return self

    def stop(self) -> None:
        """Close every connection and the listening socket; the port then refuses connections."""
        if self._thread is None or self._stopped:
            return
        self._stopped = True
        assert self._loop is not None
        self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._shutdown()))
        self._thread.join(10)

    def __enter__(self) -> ApnsTestServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("APNs test server is not started")
        return f"https://{self.host}:{self.port}"

    # configuration -----------------------------------------------------------------------------

    def respond(
        self, token: str, status: int, reason: str | None = None, *, count: int | None = None
    ) -> None:
        """Answer pushes to `token` with `status` (and JSON reason), for `count` pushes or until cleared.

        410 answers carry a `timestamp` (ms) like APNs; a missing reason defaults by status
        (410 Unregistered, 400 BadRequest, 403 Forbidden, 503 ServiceUnavailable, ...).
        """
        with self._lock:
            self._answers[token] = _TokenAnswer(status, reason or _DEFAULT_REASONS.get(status), count)

    def clear_responses(self) -> None:
        with self._lock:
            self._answers.clear()

    def set_outage(
        self,
        status: int | None = 503,
        *,
        seconds: float | None = None,
        count: int | None = None,
        reason: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer every request with `status` until `set_outage(None)`, for `seconds`, or for `count`
        requests (whichever ends first). `retry_after` adds a Retry-After header (seconds)."""
        with self._lock:
            if status is None:
                self._outage = None
                return
            until = time.monotonic() + seconds if seconds is not None else None
            self._outage = _Outage(status, reason or _DEFAULT_REASONS.get(status), until, count, retry_after)

    def set_delay(self, seconds: float) -> None:
        """Wait this long before answering each push (concurrency tests); the loop is not blocked."""
        with self._lock:
            self._delay = seconds

    def close_connections(self, timeout: float = 5.0) -> int:
        """GOAWAY and close every open connection, as APNs does with idle ones; returns how many."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._close_all(), self._loop)
        return future.result(timeout)

    # credentials -------------------------------------------------------------------------------

    def issue_client_credentials(
        self,
        topic: str | None = None,
        *,
        key_label: str = "apns-push-client",
        days: int = 365,
        not_before: datetime | None = None,
    ) -> PushCredentials:
        """A push certificate like Apple's (subject UID = topic, CN = APSP:<uuid>, clientAuth) signed
        by the client CA this server trusts. Certificates share the key of `key_label`."""
        if self.client_ca is None or self._client_ca_key is None:
            raise RuntimeError("this server was built without the client CA key (use start_apns_server)")
        push_uuid = str(uuid.uuid4())
        topic = topic or f"com.apple.mgmt.External.{push_uuid}"
        cert, key = pki.issue_cert(
            self.client_ca,
            self._client_ca_key,
            f"APSP:{push_uuid}",
            key=pki.rsa_key(key_label),
            days=days,
            not_before=not_before,
            extended_key_usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
            uid=topic,
        )
        return PushCredentials(topic=topic, cert_pem=pki.pem(cert), key_pem=pki.key_pem(key))

    def issue_for_public_key(self, public_key: Any, topic: str | None = None) -> tuple[str, bytes]:
        """Apple's Push Certificates Portal for a CSR's key: (topic, the certificate alone, PEM),
        signed by the client CA this server trusts. The private key never leaves its owner."""
        if self.client_ca is None or self._client_ca_key is None:
            raise RuntimeError("this server was built without the client CA key (use start_apns_server)")
        push_uuid = str(uuid.uuid4())
        topic = topic or f"com.apple.mgmt.External.{push_uuid}"
        cert, _key = pki.issue_cert(
            self.client_ca,
            self._client_ca_key,
            f"APSP:{push_uuid}",
            key=_PublicKeyOnly(public_key),
            extended_key_usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
            uid=topic,
        )
        return topic, pki.pem(cert)

    # observations ------------------------------------------------------------------------------

    @property
    def pushes(self) -> list[PushRecord]:
        """A snapshot of every request received so far, in order of receipt."""
        with self._lock:
            return list(self._pushes)

    def pushes_to(self, token: str) -> list[PushRecord]:
        return [push for push in self.pushes if push.token == token]

    def wait_for_pushes(self, n: int, timeout: float = 5.0) -> list[PushRecord]:
        """Block until at least `n` requests were received; AssertionError after `timeout` seconds."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._pushes) >= n, timeout):
                raise AssertionError(f"expected {n} pushes within {timeout} s, got {len(self._pushes)}")
            return list(self._pushes)

    def clear_pushes(self) -> None:
        with self._lock:
            self._pushes.clear()

    @property
    def connection_count(self) -> int:
        """TLS connections accepted (client certificate verified, HTTP/2 negotiated)."""
        with self._lock:
            return self._connections

    @property
    def tcp_connection_count(self) -> int:
        """TCP connections accepted, including those whose TLS handshake failed."""
        with self._lock:
            return self._tcp_connections

    @property
    def open_connection_count(self) -> int:
        with self._lock:
            return len(self._open)

    @property
    def handshake_failures(self) -> list[str]:
        """Why each failed TLS handshake failed (e.g. no client certificate, unknown CA)."""
        with self._lock:
            return list(self._handshake_failures)

    def wait_for_handshake_failures(self, n: int, timeout: float = 5.0) -> list[str]:
        """Block until at least `n` TLS handshakes failed (the client may see the error first)."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._handshake_failures) >= n, timeout):
                raise AssertionError(
                    f"expected {n} failed handshakes within {timeout} s, got {len(self._handshake_failures)}"
                )
            return list(self._handshake_failures)

    @property
    def peak_streams_in_flight(self) -> int:
        """The most pushes the server held unanswered at once, over all connections."""
        with self._lock:
            return self._peak_streams_in_flight

    @property
    def peak_streams_by_connection(self) -> dict[int, int]:
        """Per connection id: the most pushes it held unanswered at once."""
        with self._lock:
            return dict(self._peaks)

    @property
    def errors(self) -> list[str]:
        """Unexpected errors inside the server (a test should usually assert this is empty)."""
        with self._lock:
            return list(self._errors)

    # the server --------------------------------------------------------------------------------

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.set_exception_handler(self._on_loop_error)
        try:
            server = loop.run_until_complete(asyncio.start_server(self._accept, self.host, 0))
        except BaseException as exc:  # reported to start()
            failure.append(exc)
            ready.set()
            loop.close()
            return
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, ConnectionError | ssl.SSLError):
            return  # a client going away mid-write is not a server bug
        with self._lock:
            self._errors.append(f"{context.get('message')}: {exc!r}")

    async def _shutdown(self) -> None:
        self._server.close()
        await self._close_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        asyncio.get_running_loop().stop()

    async def _close_all(self) -> int:
        with self._lock:
            connections = list(self._open.values())
        for connection in connections:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                connection.h2.close_connection()
            connection.flush()
            connection.writer.close()
        return len(connections)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            with self._lock:
                self._errors.append(f"connection handler: {exc!r}")
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self._tcp_connections += 1
        try:
            # TLS after accept (not start_server(ssl=...)) so a refused client certificate is seen here.
            await writer.start_tls(self._ssl, ssl_handshake_timeout=5)
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            with self._lock:
                self._handshake_failures.append(f"{type(exc).__name__}: {exc}")
                self._lock.notify_all()
            return
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
            with self._lock:
                self._handshake_failures.append("client did not negotiate h2 with ALPN")
                self._lock.notify_all()
            return
        peer = x509.load_der_x509_certificate(ssl_object.getpeercert(binary_form=True))
        uids = peer.subject.get_attributes_for_oid(NameOID.USER_ID)
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self._max_streams},
        )
        with self._lock:
            self._connections += 1
            connection = _Connection(
                id=next(self._connection_ids),
                subject=peer.subject.rfc4514_string(),
                uid=str(uids[0].value) if uids else None,
                h2=conn,
                writer=writer,
            )
            self._open[connection.id] = connection
        try:
            conn.initiate_connection()
            connection.flush()
            await self._read_frames(reader, connection)
        finally:
            with self._lock:
                self._open.pop(connection.id, None)
                self._streams_in_flight -= connection.in_flight

    async def _read_frames(self, reader: asyncio.StreamReader, connection: _Connection) -> None:
        conn = connection.h2
        while True:
            data = await reader.read(65536)
            if not data:
                return
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                connection.flush()  # h2 queued a GOAWAY explaining the error
                return
            for event in events:
                if isinstance(event, h2.events.RequestReceived):
                    connection.streams[event.stream_id] = (list(event.headers), bytearray())
                elif isinstance(event, h2.events.DataReceived):
                    if event.stream_id in connection.streams:
                        connection.streams[event.stream_id][1].extend(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    request = connection.streams.pop(event.stream_id, None)
                    if request is not None:
                        self._on_request(connection, event.stream_id, *request)
                elif isinstance(event, h2.events.StreamReset):
                    connection.streams.pop(event.stream_id, None)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    connection.flush()
                    return
            connection.flush()
            await connection.writer.drain()

    def _on_request(
        self, connection: _Connection, stream_id: int, raw_headers: list[tuple[str, str]], body: bytearray
    ) -> None:
        pseudo = {name: value for name, value in raw_headers if name.startswith(":")}
        headers = {name.lower(): value for name, value in raw_headers if not name.startswith(":")}
        method, path = pseudo.get(":method", ""), pseudo.get(":path", "")
        token = path.removeprefix("/3/device/") if path.startswith("/3/device/") else ""
        try:
            payload = json.loads(bytes(body))
        except ValueError:
            payload = None
        apns_id = headers.get("apns-id") or str(uuid.uuid4())
        with self._lock:
            status, reason, retry_after = self._decide(method, path, token, headers, bytes(body), connection)
            self._pushes.append(
                PushRecord(
                    token=token,
                    method=method,
                    path=path,
                    headers=headers,
                    body=bytes(body),
                    payload=payload,
                    client_subject=connection.subject,
                    client_uid=connection.uid,
                    connection_id=connection.id,
                    stream_id=stream_id,
                    status=status,
                    reason=reason,
                    apns_id=apns_id,
                    received_monotonic=time.monotonic(),
                    received_at=datetime.fromtimestamp(time.time(), UTC),
                )
            )
            self._streams_in_flight += 1
            self._peak_streams_in_flight = max(self._peak_streams_in_flight, self._streams_in_flight)
            connection.in_flight += 1
            connection.peak_in_flight = max(connection.peak_in_flight, connection.in_flight)
            self._peaks[connection.id] = connection.peak_in_flight
            delay = self._delay
            self._lock.notify_all()
        answer = (connection, stream_id, status, reason, apns_id, retry_after)
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._answer, *answer)
        else:
            self._answer(*answer)

    def _decide(
        self,
        method: str,
        path: str,
        token: str,
        headers: dict[str, str],
        body: bytes,
        connection: _Connection,
    ) -> tuple[int, str | None, int | None]:
        """Status, reason and Retry-After for one request; called with the lock held."""
        outage = self._outage
        if outage is not None and outage.until is not None and time.monotonic() >= outage.until:
            outage = self._outage = None
        if outage is not None:
            if outage.remaining is not None:
                outage.remaining -= 1
                if outage.remaining <= 0:
                    self._outage = None
            return outage.status, outage.reason, outage.retry_after
        if self.strict:
            refusal = self._refusal(method, path, token, headers, body, connection)
            if refusal is not None:
                return refusal[0], refusal[1], None
        answer = self._answers.get(token)
        if answer is not None:
            if answer.remaining is not None:
                answer.remaining -= 1
                if answer.remaining <= 0:
                    del self._answers[token]
            return answer.status, answer.reason, None
        return 200, None, None

    @staticmethod
    def _refusal(
        method: str, path: str, token: str, headers: dict[str, str], body: bytes, connection: _Connection
    ) -> tuple[int, str] | None:
        """The error real APNs gives a malformed request, or None."""
        if not path.startswith("/3/device/"):
            return 404, "BadPath"
        if method != "POST":
            return 405, "MethodNotAllowed"
        if not token or len(token) % 2 or any(c not in "0123456789abcdefABCDEF" for c in token):
            return 400, "BadDeviceToken"
        topic = headers.get("apns-topic")
        if topic is not None and connection.uid is not None and topic != connection.uid:
            return 400, "TopicDisallowed"
        push_type = headers.get("apns-push-type")
        if push_type is not None and push_type not in _PUSH_TYPES:
            return 400, "InvalidPushType"
        if headers.get("apns-priority", "10") not in {"1", "5", "10"}:
            return 400, "BadPriority"
        if not headers.get("apns-expiration", "0").isdigit():
            return 400, "BadExpirationDate"
        if not body:
            return 400, "PayloadEmpty"
        if len(body) > MAX_PAYLOAD:
            return 413, "PayloadTooLarge"
        return None

    def _answer(
        self,
        connection: _Connection,
        stream_id: int,
        status: int,
        reason: str | None,
        apns_id: str,
        retry_after: int | None,
    ) -> None:
        with self._lock:
            if connection.id in self._open:
                connection.in_flight -= 1
                self._streams_in_flight -= 1
            else:
                return  # the connection is gone; its streams were already uncounted
        headers = [(":status", str(status)), ("apns-id", apns_id)]
        body = b""
        if status != 200:
            error: dict[str, Any] = {"reason": reason}
            if status == 410:
                error["timestamp"] = int(time.time() * 1000)
            body = json.dumps(error).encode()
            headers += [("content-type", "application/json"), ("content-length", str(len(body)))]
        if retry_after is not None:
            headers.append(("retry-after", str(retry_after)))
        try:
            connection.h2.send_headers(stream_id, headers, end_stream=not body)
            if body:
                connection.h2.send_data(stream_id, body, end_stream=True)
        except h2.exceptions.ProtocolError:
            return  # the client reset the stream or the connection is closing
        connection.flush()


def start_apns_server(tmp_path: str | Path, **options: Any) -> ApnsTestServer:
    """Make a server PKI and a client (push) CA under `tmp_path`, start a server, and return it.

    `server.ca_file` is the CA to trust the server with; `server.issue_client_credentials()` mints
    push certificates it accepts. Options go to `ApnsTestServer`.
    """
    directory = Path(tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    server_ca, server_ca_key = pki.make_ca("Hikeshi Test APNs Server CA")
    server_cert, server_key = pki.make_server_cert(server_ca, server_ca_key)
    client_ca, client_ca_key = pki.make_ca("Hikeshi Test Apple Push CA")
    server = ApnsTestServer(
        pki.write_pem(directory / "apns-client-ca.pem", client_ca),
        pki.write_pem(directory / "apns-server.pem", server_cert),
        pki.write_pem(directory / "apns-server-key.pem", server_key),
        ca_file=pki.write_pem(directory / "apns-server-ca.pem", server_ca),
        client_ca=(client_ca, client_ca_key),
        **options,
    )
    return server.start()


@pytest.fixture
def apns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApnsTestServer]:
    """A running APNs stand-in with its own PKI; stopped after the test."""
    server = start_apns_server(tmp_path_factory.mktemp("apns"))
    yield server
    server.stop()


class _PublicKeyOnly:
    """pki.issue_cert reads only `key.public_key()`: what a portal sees of a CSR."""

    def __init__(self, public_key: Any) -> None:
        self._public_key = public_key

    def public_key(self) -> Any:
        return self._public_key
