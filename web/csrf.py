"""CSRF protection for console forms: a synchronizer token bound to the session.

The token is an HMAC of the session cookie value (or, before login, of a random pre-session
cookie), so it needs no storage and dies with the session. Every unsafe request to the console
must carry it in the form field `csrf_token` or the `X-CSRF-Token` header; the Origin header,
when the browser sends one, must be our own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from flask import Response, g, request

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
PRE_SESSION_COOKIE = "hikeshi_pre"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfError(Exception):
    pass


def _binding() -> str:
    """What the token is bound to: the session token, else the pre-session nonce."""
    if g.get("session_token"):
        return "s:" + g.session_token
    nonce = g.get("pre_session") or request.cookies.get(PRE_SESSION_COOKIE)
    if not nonce or len(nonce) > 100:
        nonce = secrets.token_urlsafe(24)
        g.new_pre_session = nonce
    g.pre_session = nonce
    return "p:" + nonce


def csrf_token(secret_key: str) -> str:
    return hmac.new(secret_key.encode(), b"csrf:" + _binding().encode(), hashlib.sha256).hexdigest()


def _origin_ok(public_url: str) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    allowed = {_origin_of(request.host_url), _origin_of(public_url)}
    return origin in allowed


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def check_request(secret_key: str, public_url: str) -> None:
    """Raise CsrfError for an unsafe request without a valid token or from a foreign origin."""
    if request.method in SAFE_METHODS:
        return
    if not _origin_ok(public_url):
        _refuse("request from another origin")
    presented = request.headers.get(HEADER) or request.form.get(FIELD) or ""
    expected = csrf_token(secret_key)
    if not presented or not hmac.compare_digest(presented.encode(), expected.encode()):
        _refuse("missing or invalid CSRF token")


def _refuse(reason: str) -> None:
    # Marked on the request so the error handler audits the refusal (web.refusals).
    g.csrf_refused = reason
    raise CsrfError(reason)


def set_pre_session_cookie(response: Response, secure: bool) -> Response:
    nonce = g.get("new_pre_session")
    if nonce:
        response.set_cookie(
            PRE_SESSION_COOKIE, nonce, httponly=True, samesite="Lax", secure=secure, path="/console"
        )
    return response
