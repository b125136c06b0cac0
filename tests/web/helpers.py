"""Helpers for web tests: users and tokens made through the real services, logins through the
real forms, and a live HTTP server in a thread for schemathesis and the browser."""

from __future__ import annotations

import functools
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pyotp
from flask import Flask
from sqlalchemy.orm import Session
from werkzeug.serving import WSGIRequestHandler, make_server

from mdm.ground import clock
from mdm.ground.audit import SYSTEM
from mdm.ground.models import User
from web.auth import passwords
from web.auth.tokens import create_api_token
from web.auth.users import confirm_totp, create_user, pending_totp_seed

PASSWORD = "correct horse battery staple"
CSRF_RE = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


@functools.cache
def _hash_of(password: str) -> str:
    # argon2id is slow on purpose; tests reuse one hash per password (verification is unchanged).
    return passwords.hash_password(password)


@dataclass
class Account:
    user_id: int
    username: str
    password: str
    seed: str | None = None

    def code(self, at: Any = None) -> str:
        assert self.seed is not None
        return pyotp.TOTP(self.seed).at(at or clock.now())


def make_user(
    session: Session,
    settings: Any,
    username: str,
    role: str,
    *,
    org_unit_id: int | None = None,
    password: str = PASSWORD,
    totp: bool | None = None,
    must_change: bool = False,
) -> Account:
    """A user with a known password (and TOTP enrolled when `totp`, default: for admin/approver)."""
    user, _one_time = create_user(
        session, username=username, role=role, org_unit_id=org_unit_id, actor=SYSTEM
    )
    user.password_hash = _hash_of(password)
    user.must_change_password = must_change
    seed = None
    if totp if totp is not None else role in ("admin", "approver"):
        seed = pending_totp_seed(session, user, settings)
        # Enroll with the previous step's code, so the first login's current code is still fresh.
        confirm_totp(
            session, user, pyotp.TOTP(seed).at(clock.now() - timedelta(seconds=30)), settings, actor=SYSTEM
        )
    session.commit()
    return Account(user.id, user.username, password, seed)


def token_owner(session: Session, role: str, *, org_unit_id: int | None = None) -> User:
    """A person of its own for a test token (each token a different person unless `owner` is given)."""
    user = User(
        username=f"owner-{secrets.token_hex(4)}",
        role=role,
        org_unit_id=org_unit_id,
        password_hash=_hash_of(PASSWORD),
        must_change_password=False,
        created_by="test",
    )
    session.add(user)
    session.flush()
    return user


def make_token(
    session: Session,
    role: str,
    *,
    org_unit_id: int | None = None,
    days: float = 30,
    name: str | None = None,
    owner_id: int | None = None,
    service_account: str | None = None,
) -> str:
    """A token owned by `owner_id`, by `service_account`, or else by a fresh person with the role
    (dispatch, not a person's role: a service account)."""
    owner = None
    if service_account is None and role == "dispatch" and owner_id is None:
        service_account = f"dispatch-{secrets.token_hex(3)}"
    if service_account is None:
        owner = (
            session.get(User, owner_id)
            if owner_id is not None
            else token_owner(session, role, org_unit_id=org_unit_id)
        )
    _token, text = create_api_token(
        session,
        name=name or f"{role} test token",
        role=role,
        org_unit_id=org_unit_id,
        expires_at=clock.now() + timedelta(days=days),
        actor=SYSTEM,
        owner=owner,
        service_account=service_account,
    )
    session.commit()
    return text


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def csrf_of(html: str | bytes) -> str:
    text = html.decode() if isinstance(html, bytes) else html
    match = CSRF_RE.search(text)
    assert match, "no CSRF token on the page"
    return match.group(1)


def login(client: Any, account: Account, *, base: str = "") -> Any:
    """Sign in through the forms (password, then TOTP when the user has it); returns the last response."""
    page = client.get(f"{base}/console/login")
    response = client.post(
        f"{base}/console/login",
        data={"username": account.username, "password": account.password, "csrf_token": csrf_of(page.data)},
    )
    assert response.status_code == 302, response.data[:500]
    if account.seed is not None:
        page = client.get(f"{base}/console/login/totp")
        response = client.post(
            f"{base}/console/login/totp", data={"code": account.code(), "csrf_token": csrf_of(page.data)}
        )
        assert response.status_code == 302, response.data[:500]
    return response


def post_form(client: Any, path: str, data: dict[str, Any], *, page: str | None = None) -> Any:
    """POST a console form with a CSRF token taken from `page` (default: the same path)."""
    html = client.get(page or path).data
    return client.post(path, data={**data, "csrf_token": csrf_of(html)})


def user_row(session: Session, username: str) -> User:
    from web.auth.users import find_user_by_name

    session.expire_all()
    user = find_user_by_name(session, username)
    assert user is not None
    return user


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@contextmanager
def live_server(app: Flask) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 (a free port) in a background thread; yields the base URL."""
    with live_app(lambda _base: app) as (base, _app):
        yield base


@contextmanager
def live_app(build: Callable[[str], Flask]) -> Iterator[tuple[str, Flask]]:
    """Like live_server, but the app is built knowing its own URL (for Settings.public_url)."""
    server = make_server("127.0.0.1", 0, _not_ready, threaded=True, request_handler=_QuietHandler)
    base = f"http://127.0.0.1:{server.server_port}"
    app = build(base)
    server.app = app
    thread = threading.Thread(target=server.serve_forever, name="hikeshi-live-server", daemon=True)
    thread.start()
    try:
        yield base, app
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


def _not_ready(environ: Any, start_response: Any) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting\n"]
