"""The Android agent endpoints under /android/v1 (docs/android-agent-protocol.md).

POST /android/v1/enroll   token + CSR → device id, certificate chain, first policy
POST /android/v1/sync     inventory + results → policy (if changed) + commands
POST /android/v1/wifi-certificate  CSR of a key pair the device generated → its EAP-TLS certificate
GET  /android/v1/wait     long poll: 200 as soon as a command is queued, 204 at the timeout
GET  /android/provisioning/<token>/sheet, /qr.png   the printable provisioning sheet (mdm.doors.android.sheet)

Thin handlers: read the body (size-limited) and the credential its headers present, call one
service (which decides who the device is before the body is validated), commit, answer JSON.
Every refusal is JSON with a stable error code.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from flask import Blueprint, Response, current_app, request
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from mdm.doors.android import protocol, sheet
from mdm.doors.android.auth import read_credential
from mdm.doors.android.protocol import PREFIX
from mdm.doors.appctx import client_ip, command_context, db_session, hikeshi, settings
from mdm.doors.bodies import BodyTooLarge, read_body
from mdm.ground.ca import CANotReady
from mdm.ground.push.wakeups import WakeupBoardFull, watch_wakeup
from mdm.ground.x509util import to_pem
from mdm.services import android_channel
from mdm.services.android_channel import PROTOCOL_VERSION, Credential, ProtocolError, Unauthenticated

log = logging.getLogger(__name__)
bp = Blueprint("android_agent", __name__, template_folder="templates")

# The long poll re-reads the database at least this often. A command queued on any worker or node
# wakes it at once through the cross-process signal (mdm.ground.signals, PostgreSQL NOTIFY, wired
# to the wake-up board in mdm.roots.wiring); this re-read covers a signal that never came (SQLite
# with several worker processes, the listening connection down).
RECHECK_SECONDS = 2.0
# An agent refused a long poll (too many held) tries again after this long, syncing meanwhile.
BUSY_RETRY_SECONDS = 60
# An agent told the database is away tries again after this long (as Apple devices are told).
RETRY_AFTER_SECONDS = 30
_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "busy",
    503: "unavailable",
}


def _json(status: int, body: dict[str, Any]) -> Response:
    response = Response(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        status=status,
        content_type="application/json; charset=utf-8",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(OperationalError)
@bp.errorhandler(PoolTimeout)
def _database_unavailable(exc: Exception) -> Response:
    """The database is away: the protocol's JSON error (agents back off on 503 + Retry-After),
    not the plain-text 503 the rest of the server answers. The request's work was rolled back."""
    log.error("android request: database unavailable: %s", exc)
    response = _json(
        503, ProtocolError(503, "unavailable", "the server cannot answer now; retry later").body()
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    code = exc.code or 500
    response = _json(
        code, ProtocolError(code, _HTTP_CODES.get(code, "bad_request"), exc.description or "").body()
    )
    return response


@bp.route(f"{PREFIX}/<path:_rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def _unrouted(_rest: str) -> Response:
    """A path or method of the agent protocol that does not exist, answered in the protocol's
    JSON (the routing errors would otherwise be Flask's HTML, outside this blueprint)."""
    allowed = sorted(
        method
        for rule in current_app.url_map.iter_rules()
        if rule.endpoint != "android_agent._unrouted" and rule.rule == request.path
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    )
    if allowed:
        response = _json(405, ProtocolError(405, "method_not_allowed", f"use {', '.join(allowed)}").body())
        response.headers["Allow"] = ", ".join(allowed)
        return response
    return _json(404, ProtocolError(404, "not_found", "no such endpoint of the agent protocol").body())


@bp.errorhandler(Exception)
def _internal_error(exc: Exception) -> Response:
    # A bug: said as the protocol says errors; the traceback goes to the log, never to the agent.
    log.exception("android request failed")
    db_session().rollback()
    return _json(500, ProtocolError(500, "internal_error", "the server failed; retry later").body())


def _refused(exc: ProtocolError) -> Response:
    if isinstance(exc, Unauthenticated):
        log.warning("android request refused from %s: %s", request.remote_addr, exc.reason)
    db_session().rollback()
    return _json(exc.status, exc.body())


def _json_body(max_bytes: int) -> tuple[bytes, Any]:
    body = read_body(request, max_bytes)
    if request.mimetype != "application/json":
        raise ProtocolError(
            415, "unsupported_media_type", "send the body as application/json", "Content-Type"
        )
    try:
        return body, json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: absurd nesting
        raise ProtocolError(400, "bad_request", "the body is not UTF-8 JSON", "body") from exc


def _signed_path() -> str:
    query = request.query_string.decode("latin-1")
    return request.path + ("?" + query if query else "")


def _credential(body: bytes) -> Credential:
    return read_credential(
        method=request.method,
        path=_signed_path(),
        headers=request.headers,
        body=body,
        client_cert_header=settings().client_cert_header,
    )


@bp.post(PREFIX + "/enroll")
def enroll() -> Response:
    conf = settings()
    session = db_session()
    try:
        _raw, payload = _json_body(conf.max_device_body_bytes)
        data = protocol.load(protocol.EnrollRequestSchema(), payload)
        enrolled = android_channel.enroll(session, conf, data, source_ip=client_ip())
        answer = {
            "protocol": PROTOCOL_VERSION,
            "device_id": enrolled.device.id,
            "certificate": to_pem(enrolled.certificate),
            "certificate_chain": [to_pem(enrolled.certificate), to_pem(enrolled.ca_certificate)],
            "policy": enrolled.policy.body(),
            "policy_version": enrolled.policy.version,
            "poll_interval_seconds": conf.android_poll_interval_seconds,
            "wake": enrolled.wake,
        }
        session.commit()
    except BodyTooLarge as exc:
        return _refused(ProtocolError(413, "body_too_large", str(exc)))
    except android_channel.SerialConflict as exc:
        # The service rolled the enrollment back and recorded the refusal (alert, audit): kept.
        log.warning("android enrollment refused from %s: serial %r already enrolled", client_ip(), exc.serial)
        session.commit()
        return _json(exc.status, exc.body())
    except ProtocolError as exc:
        return _refused(exc)
    except CANotReady as exc:
        log.error("android enrollment refused: %s", exc)
        return _refused(ProtocolError(503, "ca_not_ready", "the server's CA is not ready; try again later"))
    return _json(201, answer)


# One instance for every sync: a new one (and its nested schemas) per request cost more CPU than
# validating the body. Loading keeps no state in the instance.
_SYNC_REQUEST = protocol.SyncRequestSchema()


@bp.post(PREFIX + "/sync")
def sync_view() -> Response:
    conf = settings()
    session = db_session()
    try:
        raw, payload = _json_body(conf.max_device_body_bytes)
        answer = android_channel.sync(
            session,
            conf,
            _credential(raw),
            raw,
            lambda: protocol.load(_SYNC_REQUEST, payload),
            source_ip=client_ip(),
            context=command_context(),
            inventory_hint=isinstance(payload, dict) and payload.get("inventory") is not None,
        )
        session.commit()
    except BodyTooLarge as exc:
        return _refused(ProtocolError(413, "body_too_large", str(exc)))
    except ProtocolError as exc:
        return _refused(exc)
    return _json(200, answer)


@bp.post(PREFIX + "/wifi-certificate")
def wifi_certificate() -> Response:
    conf = settings()
    session = db_session()
    try:
        raw, payload = _json_body(conf.max_device_body_bytes)
        answer = android_channel.issue_wifi_certificate(
            session,
            conf,
            _credential(raw),
            lambda: protocol.load(protocol.WifiCertificateRequestSchema(), payload),
            source_ip=client_ip(),
        )
        session.commit()
    except BodyTooLarge as exc:
        return _refused(ProtocolError(413, "body_too_large", str(exc)))
    except ProtocolError as exc:
        return _refused(exc)
    except CANotReady as exc:
        log.error("android Wi-Fi certificate refused: %s", exc)
        return _refused(ProtocolError(503, "ca_not_ready", "the server's CA is not ready; try again later"))
    return _json(201, answer)


@bp.get(PREFIX + "/wait")
def wait() -> Response:
    conf = settings()
    session = db_session()
    try:
        raw = read_body(request, conf.max_device_body_bytes)
        credential = _credential(raw)
        timeout = _timeout(conf.android_long_poll_seconds)
        device_id = android_channel.start_wait(session, conf, credential)
        session.commit()
    except BodyTooLarge as exc:
        return _refused(ProtocolError(413, "body_too_large", str(exc)))
    except ProtocolError as exc:
        return _refused(exc)
    # Hold no database connection while waiting.
    session.close()
    if not _HOLDERS.enter(device_id, conf.android_max_long_polls):
        return _busy()
    deadline = time.monotonic() + timeout
    try:
        while True:
            # Watch first, then read: a commit landing between the two still wakes us.
            with watch_wakeup(device_id) as wakeup:
                if _pending(device_id):
                    return _json(200, {"protocol": PROTOCOL_VERSION, "commands_pending": True})
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return Response(status=204, headers={"Cache-Control": "no-store"})
                wakeup.wait(min(remaining, RECHECK_SECONDS))
    except WakeupBoardFull:
        return _busy()
    finally:
        _HOLDERS.leave(device_id)


class _LongPolls:
    """How many long polls this process holds: each one keeps a server thread busy. One device
    gets at most PER_DEVICE of them (a reconnecting agent may overlap its abandoned poll), so no
    agent can take every thread."""

    PER_DEVICE = 2

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}
        self._total = 0

    def enter(self, device_id: int, limit: int) -> bool:
        with self._lock:
            if self._total >= limit or self._held.get(device_id, 0) >= self.PER_DEVICE:
                return False
            self._held[device_id] = self._held.get(device_id, 0) + 1
            self._total += 1
            return True

    def leave(self, device_id: int) -> None:
        with self._lock:
            self._total -= 1
            left = self._held.pop(device_id, 1) - 1
            if left:
                self._held[device_id] = left


_HOLDERS = _LongPolls()


def _busy() -> Response:
    response = _json(503, ProtocolError(503, "busy", "too many agents are waiting; sync later").body())
    response.headers["Retry-After"] = str(BUSY_RETRY_SECONDS)
    return response


def _timeout(cap: int) -> float:
    value = request.args.get("timeout")
    if value is None:
        return float(cap)
    if not value.isdigit() or int(value) > cap:
        raise ProtocolError(400, "bad_request", f"timeout: whole seconds from 0 to {cap}", "timeout")
    return float(value)


def _pending(device_id: int) -> bool:
    with hikeshi().session_factory() as session:
        return android_channel.commands_waiting(session, device_id)


sheet.register(bp)
