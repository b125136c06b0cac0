"""A device assignment service (Apple Business Manager's API) on loopback, for tests.

Written from Apple's documentation of the service, independently of Hikeshi's client:

- `GET /session` with an OAuth 1.0a Authorization header (realm "ADM", HMAC-SHA1, the server
  token's consumer key and access token): the signature is recomputed here (RFC 5849) and a
  bad one, an unknown key, a stale timestamp or a replayed nonce is refused with 401 / 403.
  The answer is `{"auth_session_token": ...}`.
- Every other endpoint wants `X-ADM-Auth-Session`; sessions can be expired (401) on demand or
  after a number of requests, and a fresh session header may come back on any answer.
- `GET /account`; `POST /server/devices` (pages, `cursor`, `more_to_follow`); `POST /devices/sync`
  (changes since a cursor, with op_type; `EXPIRED_CURSOR` on demand); `POST /profile` (define);
  `PUT /profile/devices` (assign, per-serial results); `GET /profile?profile_uuid=`.
- Throttling: the next N requests answer 429 with Retry-After, or 503.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from tests.support.loopback_http import LoopbackService, QuietHandler


def _enc(value: str) -> str:
    return quote(value, safe="-._~")


@dataclass
class SimDevice:
    serial_number: str
    model: str = "iPad (10th generation)"
    description: str = "IPAD WI-FI 64GB BLUE-JPN"
    color: str = "BLUE"
    device_family: str = "iPad"
    os: str = "iOS"
    profile_status: str = "empty"
    profile_uuid: str | None = None
    device_assigned_date: str = "2026-11-30T01:00:00Z"

    def record(self, op_type: str | None = None) -> dict[str, Any]:
        value = {
            "serial_number": self.serial_number,
            "model": self.model,
            "description": self.description,
            "color": self.color,
            "device_family": self.device_family,
            "os": self.os,
            "profile_status": self.profile_status,
            "device_assigned_date": self.device_assigned_date,
            "device_assigned_by": "it@fire.example.jp",
        }
        if self.profile_uuid:
            value["profile_uuid"] = self.profile_uuid
        if op_type:
            value["op_type"] = op_type
            value["op_date"] = "2026-12-01T00:00:00Z"
        return value


@dataclass
class DeviceAssignmentService:
    consumer_key: str
    consumer_secret: str
    access_token: str
    access_secret: str
    devices: dict[str, SimDevice] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (op_type, serial) in order: a cursor is an index into it.
    events: list[tuple[str, str]] = field(default_factory=list)
    sessions: dict[str, int] = field(default_factory=dict)  # token -> requests left
    session_lifetime: int = 1000
    nonces: set[str] = field(default_factory=set)
    throttle: list[tuple[int, str | None]] = field(default_factory=list)  # (status, Retry-After)
    expired_cursors: bool = False
    page_size: int = 1000
    log: list[tuple[str, str, int]] = field(default_factory=list)
    session_requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- what the test does to ABM -----------------------------------------------------------

    def add_device(self, serial: str, **values: Any) -> SimDevice:
        with self.lock:
            device = SimDevice(serial, **values)
            self.devices[serial] = device
            self.events.append(("added", serial))
            return device

    def remove_device(self, serial: str) -> None:
        with self.lock:
            self.devices.pop(serial, None)
            self.events.append(("deleted", serial))

    def expire_sessions(self) -> None:
        with self.lock:
            self.sessions.clear()

    def throttle_next(self, count: int, status: int = 429, retry_after: str | None = "0") -> None:
        with self.lock:
            self.throttle.extend([(status, retry_after)] * count)

    # -- OAuth 1.0a (RFC 5849) -----------------------------------------------------------------

    def check_oauth(self, method: str, url: str, header: str | None) -> str | None:
        """None when the header is a valid signature by the token's holder, else the reason."""
        if not header or not header.startswith("OAuth "):
            return "no OAuth Authorization header"
        params: dict[str, str] = {}
        for part in header[6:].split(","):
            name, _, value = part.strip().partition("=")
            params[name] = unquote(value.strip().strip('"'))
        if params.get("realm") != "ADM":
            return "realm must be ADM"
        if (
            params.get("oauth_consumer_key") != self.consumer_key
            or params.get("oauth_token") != self.access_token
        ):
            return "unknown consumer key or token"
        if params.get("oauth_signature_method") != "HMAC-SHA1":
            return "signature method must be HMAC-SHA1"
        try:
            stamp = int(params.get("oauth_timestamp", ""))
        except ValueError:
            return "bad timestamp"
        if abs(time.time() - stamp) > 300:
            return "stale timestamp"
        nonce = params.get("oauth_nonce", "")
        if not nonce or nonce in self.nonces:
            return "replayed nonce"
        parts = urlsplit(url)
        base_uri = f"{parts.scheme}://{parts.netloc.lower()}{parts.path}"
        pairs = [(k, v) for k, v in params.items() if k not in ("realm", "oauth_signature")]
        pairs += [(k, v) for k, vs in parse_qs(parts.query).items() for v in vs]
        normalized = "&".join(f"{k}={v}" for k, v in sorted((_enc(k), _enc(v)) for k, v in pairs))
        base = "&".join([method, _enc(base_uri), _enc(normalized)])
        key = f"{_enc(self.consumer_secret)}&{_enc(self.access_secret)}".encode()
        expected = base64.b64encode(hmac.new(key, base.encode(), hashlib.sha1).digest()).decode()
        if not hmac.compare_digest(expected, params.get("oauth_signature", "")):
            return "signature does not verify"
        self.nonces.add(nonce)
        return None

    # -- cursors -------------------------------------------------------------------------------

    @staticmethod
    def cursor_for(index: int) -> str:
        return base64.urlsafe_b64encode(json.dumps({"at": index}).encode()).decode().rstrip("=")

    @staticmethod
    def index_of(cursor: str) -> int | None:
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            return int(json.loads(base64.urlsafe_b64decode(padded))["at"])
        except (ValueError, KeyError, TypeError):
            return None


class _Handler(QuietHandler):
    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        # Logged before the answer is written: a client that has read the answer may look at the log at once.
        self.server.service.log.append((self.command, self.path, status))
        self.send_response(status)
        self.send_header(
            "Content-Type", "application/json;charset=UTF8" if not isinstance(body, str) else "text/plain"
        )
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            value = json.loads(raw) if raw else {}
        except ValueError:
            return {"__bad__": True}
        return value if isinstance(value, dict) else {"__bad__": True}

    def _handle(self) -> None:
        service = self.server.service
        path = urlsplit(self.path).path
        with service.lock:
            if service.throttle:
                status, retry = service.throttle.pop(0)
                self._answer(
                    status,
                    "TOO_MANY_REQUESTS" if status == 429 else "SERVICE_UNAVAILABLE",
                    {"Retry-After": retry} if retry is not None else {},
                )
                return
            if path == "/session" and self.command == "GET":
                url = f"http://{self.headers.get('Host')}{self.path}"
                reason = service.check_oauth("GET", url, self.headers.get("Authorization"))
                if reason is not None:
                    self._answer(401 if "signature" in reason or "nonce" in reason else 403, reason)
                    return
                token = str(uuid.uuid4())
                service.sessions[token] = service.session_lifetime
                service.session_requests += 1
                self._answer(200, {"auth_session_token": token})
                return
            token = self.headers.get("X-ADM-Auth-Session") or ""
            left = service.sessions.get(token)
            if left is None or left <= 0:
                service.sessions.pop(token, None)
                self._answer(401, "UNAUTHORIZED")
                return
            service.sessions[token] = left - 1
            if self.headers.get("X-Server-Protocol-Version") is None:
                self._answer(400, "MISSING_PROTOCOL_VERSION")
                return
            self._route(service, path)

    def _route(self, service: DeviceAssignmentService, path: str) -> None:
        if path == "/account" and self.command == "GET":
            self._answer(
                200,
                {
                    "server_name": "Hikeshi HQ",
                    "server_uuid": "6A7B1C2D-0000-4000-8000-000000000001",
                    "org_name": "消防本部",
                    "org_email": "it@fire.example.jp",
                    "org_phone": "03-0000-0000",
                    "admin_id": "it@fire.example.jp",
                    "facilitator_id": "it@fire.example.jp",
                    "urls": [],
                    "org_type": "org",
                    "org_version": "v2",
                    "org_id": "1234",
                    "org_id_hash": "ab",
                },
            )
        elif path == "/server/devices" and self.command == "POST":
            body = self._body()
            serials = sorted(service.devices)
            start = 0
            if body.get("cursor"):
                index = service.index_of(str(body["cursor"]))
                if index is None or index > len(serials):
                    self._answer(400, "INVALID_CURSOR")
                    return
                start = index
            limit = min(int(body.get("limit") or 100), service.page_size)
            page = serials[start : start + limit]
            more = start + limit < len(serials)
            # The last page's cursor is where /devices/sync picks up: the end of the change log.
            cursor = (
                service.cursor_for(start + limit)
                if more
                else service.cursor_for(len(service.events)) + ".sync"
            )
            self._answer(
                200,
                {
                    "devices": [service.devices[s].record() for s in page],
                    "cursor": cursor,
                    "more_to_follow": more,
                    "fetched_until": "2026-12-06T00:00:00Z",
                },
            )
        elif path == "/devices/sync" and self.command == "POST":
            body = self._body()
            raw = str(body.get("cursor") or "")
            if not raw:
                self._answer(400, "CURSOR_REQUIRED")
                return
            if service.expired_cursors:
                self._answer(400, "EXPIRED_CURSOR")
                return
            index = service.index_of(raw.removesuffix(".sync")) if raw.endswith(".sync") else None
            if index is None or index > len(service.events):
                self._answer(400, "INVALID_CURSOR")
                return
            limit = min(int(body.get("limit") or 100), service.page_size)
            changes = service.events[index : index + limit]
            records = []
            for op, serial in changes:
                device = service.devices.get(serial)
                records.append(device.record(op) if device else {"serial_number": serial, "op_type": op})
            end = index + len(changes)
            self._answer(
                200,
                {
                    "devices": records,
                    "cursor": service.cursor_for(end) + ".sync",
                    "more_to_follow": end < len(service.events),
                    "fetched_until": "2026-12-06T00:00:00Z",
                },
            )
        elif path == "/profile" and self.command == "POST":
            body = self._body()
            missing = [k for k in ("profile_name", "url") if not body.get(k)]
            if body.get("__bad__") or missing:
                self._answer(400, "MALFORMED_REQUEST_BODY")
                return
            profile_uuid = uuid.uuid4().hex.upper()
            service.profiles[profile_uuid] = body
            self._answer(200, {"profile_uuid": profile_uuid, "devices": {}})
        elif path == "/profile/devices" and self.command == "PUT":
            body = self._body()
            profile_uuid = body.get("profile_uuid")
            if profile_uuid not in service.profiles or not isinstance(body.get("devices"), list):
                self._answer(400, "PROFILE_NOT_FOUND")
                return
            results = {}
            for serial in body["devices"]:
                device = service.devices.get(serial)
                if device is None:
                    results[serial] = "NOT_ACCESSIBLE"
                    continue
                device.profile_uuid = profile_uuid
                device.profile_status = "assigned"
                service.events.append(("modified", serial))
                results[serial] = "SUCCESS"
            self._answer(200, {"profile_uuid": profile_uuid, "devices": results})
        elif path == "/profile" and self.command == "GET":
            wanted = parse_qs(urlsplit(self.path).query).get("profile_uuid", [""])[0]
            if wanted not in service.profiles:
                self._answer(400, "PROFILE_NOT_FOUND")
                return
            self._answer(200, {"profile_uuid": wanted, **service.profiles[wanted]})
        else:
            self._answer(404, "NOT_FOUND")

    do_GET = do_POST = do_PUT = _handle


class RunningService(LoopbackService):
    """The simulator listening on 127.0.0.1 on a free port; stop() when done."""

    service: DeviceAssignmentService

    def __init__(self, service: DeviceAssignmentService) -> None:
        super().__init__(service, _Handler)
