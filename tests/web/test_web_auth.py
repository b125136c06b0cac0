"""Console login: passwords, TOTP, recovery codes, lockout, sessions, CSRF and headers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pyotp
import pytest
from sqlalchemy import select

from mdm.ground.models import AuditEvent, WebSession
from tests.web.helpers import PASSWORD, csrf_of, login, make_user, post_form, user_row
from web.auth.lockout import THRESHOLD


def _events(session_factory: Any, prefix: str = "auth.") -> list[AuditEvent]:
    with session_factory() as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.action.startswith(prefix)).order_by(AuditEvent.id)
            )
        )


def _try_password(client: Any, username: str, password: str) -> Any:
    page = client.get("/console/login")
    return client.post(
        "/console/login", data={"username": username, "password": password, "csrf_token": csrf_of(page.data)}
    )


def test_operator_logs_in_with_password_and_every_attempt_is_audited(
    client: Any, session_factory: Any, settings: Any, tree: Any
) -> None:
    with session_factory() as session:
        account = make_user(session, settings, "sato", "operator")
    failed = _try_password(client, "sato", "wrong password!!")
    assert failed.status_code == 401
    assert "ユーザー名またはパスワードが違います" in failed.get_data(as_text=True)
    unknown = _try_password(client, "nobody", "whatever-whatever")
    assert unknown.status_code == 401 and unknown.get_data() == failed.get_data().replace(b"sato", b"nobody")
    login(client, account)
    assert client.get("/console/dashboard").status_code == 200
    events = _events(session_factory)
    assert [(e.action, e.details.get("reason")) for e in events] == [
        ("auth.login_failed", "bad_password"),
        ("auth.login_failed", "unknown_user"),
        ("auth.login", None),
    ]
    assert all(e.source_ip == "127.0.0.1" for e in events)
    assert events[2].actor == "user:sato" and events[2].actor_role == "operator"
    assert events[1].actor_role == "unknown"


def test_lockout_with_backoff(
    client: Any, session_factory: Any, settings: Any, frozen_clock: Any, tree: Any
) -> None:
    with session_factory() as session:
        account = make_user(session, settings, "suzuki", "auditor")
    for _ in range(THRESHOLD):
        assert _try_password(client, "suzuki", "not the password").status_code == 401
    # Locked: even the right password is refused, and says until when.
    locked = _try_password(client, "suzuki", PASSWORD)
    assert locked.status_code == 401 and "サインインできません" in locked.get_data(as_text=True)
    frozen_clock.advance(seconds=31)
    # One more failure after the first lock doubles the wait.
    assert _try_password(client, "suzuki", "still not it").status_code == 401
    frozen_clock.advance(seconds=31)
    assert _try_password(client, "suzuki", PASSWORD).status_code == 401
    frozen_clock.advance(seconds=31)
    assert _try_password(client, "suzuki", PASSWORD).status_code == 302
    reasons = [e.details.get("reason") for e in _events(session_factory, "auth.login")]
    assert reasons == ["bad_password"] * THRESHOLD + ["locked", "bad_password", "locked", None]
    assert account.username == "suzuki"


def test_admin_must_enroll_totp_before_anything_else(
    client: Any, session_factory: Any, settings: Any, tree: Any
) -> None:
    with session_factory() as session:
        make_user(session, settings, "yamada", "admin", totp=False, must_change=True)
    response = _try_password(client, "yamada", PASSWORD)
    assert response.status_code == 302
    # First the forced password change, nothing else is reachable.
    assert client.get("/console/devices").headers["Location"].endswith("/console/account/password")
    response = post_form(
        client,
        "/console/account/password",
        {"current_password": PASSWORD, "new_password": "short", "new_password_again": "short"},
    )
    assert "12文字以上" in response.get_data(as_text=True)
    new_password = "a much better passphrase 42"
    response = post_form(
        client,
        "/console/account/password",
        {"current_password": PASSWORD, "new_password": new_password, "new_password_again": new_password},
    )
    assert response.status_code == 302
    # Then TOTP enrollment with a QR code: the admin role requires it.
    assert client.get("/console/dashboard").headers["Location"].endswith("/console/account/totp")
    page = client.get("/console/account/totp").get_data(as_text=True)
    assert "<svg" in page
    seed = page.split('id="totp-secret">')[1].split("<")[0]
    wrong = post_form(client, "/console/account/totp", {"code": "000000"})
    assert "コードが正しくありません" in wrong.get_data(as_text=True)
    done = post_form(client, "/console/account/totp", {"code": pyotp.TOTP(seed).now()})
    codes = [c.split("</code>")[0] for c in done.get_data(as_text=True).split("<li><code>")[1:]]
    assert len(codes) == 10
    assert client.get("/console/dashboard").status_code == 200
    with session_factory() as session:
        user = user_row(session, "yamada")
        assert user.totp_enabled and not user.must_change_password and user.totp_secret_encrypted
        assert seed.encode() not in user.totp_secret_encrypted  # sealed at rest
        assert all(len(c.code_hash) == 64 and c.code_hash != codes[0] for c in user.recovery_codes)


def test_totp_login_refuses_replay_and_accepts_a_recovery_code_once(
    app: Any, session_factory: Any, settings: Any, frozen_clock: Any, tree: Any
) -> None:
    with session_factory() as session:
        account = make_user(session, settings, "kimura", "approver")
        from web.auth.users import replace_recovery_codes

        codes = replace_recovery_codes(session, user_row(session, "kimura"), settings)
        session.commit()
    first = app.test_client()
    login(first, account)
    assert first.get("/console/dashboard").status_code == 200
    # The same code again, within its 30 s: refused (a shoulder-surfed code is worthless).
    second = app.test_client()
    _try_password(second, "kimura", PASSWORD)
    assert second.get("/console/devices").headers["Location"].endswith("/console/login/totp")
    replay = post_form(second, "/console/login/totp", {"code": account.code()})
    assert replay.status_code == 401
    ok = post_form(second, "/console/login/totp", {"recovery_code": codes[0].upper()})
    assert ok.status_code == 302
    third = app.test_client()
    _try_password(third, "kimura", PASSWORD)
    assert post_form(third, "/console/login/totp", {"recovery_code": codes[0]}).status_code == 401
    frozen_clock.advance(seconds=30)
    assert post_form(third, "/console/login/totp", {"code": account.code()}).status_code == 302
    methods = [
        e.details.get("second_factor")
        for e in _events(session_factory, "auth.login")
        if e.action == "auth.login"
    ]
    assert methods == ["totp", "recovery_code", "totp"]


def test_disabled_user_session_stops_at_once(
    app: Any, session_factory: Any, settings: Any, tree: Any
) -> None:
    with session_factory() as session:
        admin = make_user(session, settings, "boss", "admin")
        operator = make_user(session, settings, "night", "operator")
    operator_client = app.test_client()
    login(operator_client, operator)
    assert operator_client.get("/console/devices").status_code == 200
    admin_client = app.test_client()
    login(admin_client, admin)
    response = post_form(
        admin_client,
        f"/console/users/{operator.user_id}/disable",
        {},
        page=f"/console/users/{operator.user_id}",
    )
    assert "直ちに終了" in response.get_data(as_text=True)  # the confirmation says what happens
    assert operator_client.get("/console/devices").status_code == 200  # not yet confirmed
    confirmed = post_form(
        admin_client,
        f"/console/users/{operator.user_id}/disable",
        {"confirmed": "yes"},
        page=f"/console/users/{operator.user_id}",
    )
    assert confirmed.status_code == 302
    refused = operator_client.get("/console/devices")
    assert refused.status_code == 302 and "/console/login" in refused.headers["Location"]
    with session_factory() as session:
        live = session.scalars(
            select(WebSession).where(WebSession.user_id == operator.user_id, WebSession.revoked_at.is_(None))
        ).all()
        assert live == []
    assert _try_password(app.test_client(), "night", PASSWORD).status_code == 401


def test_idle_timeout_ends_the_session(
    client: Any, session_factory: Any, settings: Any, frozen_clock: Any, tree: Any
) -> None:
    with session_factory() as session:
        account = make_user(session, settings, "ito", "auditor")
    login(client, account)
    frozen_clock.advance(minutes=settings.session_idle_minutes - 1)
    assert client.get("/console/audit").status_code == 200
    frozen_clock.advance(minutes=settings.session_idle_minutes - 1)
    # Polling the command history is not activity.
    poll = client.get(f"/console/devices/{tree.device_a.id}/commands.json", headers={"X-Hikeshi-Poll": "1"})
    assert poll.status_code == 200
    frozen_clock.advance(minutes=2)
    assert (
        client.get(
            f"/console/devices/{tree.device_a.id}/commands.json", headers={"X-Hikeshi-Poll": "1"}
        ).status_code
        == 401
    )
    response = client.get("/console/audit")
    assert response.status_code == 302
    assert "操作がなかった" in client.get(response.headers["Location"]).get_data(as_text=True)


def test_csrf_rejects_a_form_post_without_token(
    client: Any, session_factory: Any, settings: Any, tree: Any
) -> None:
    with session_factory() as session:
        account = make_user(session, settings, "kato", "operator")
    assert client.post("/console/login", data={"username": "kato", "password": PASSWORD}).status_code == 400
    login(client, account)
    command = {"device_id": str(tree.device_a.id), "request_type": "DeviceLock", "confirmed": "yes"}
    assert client.post("/console/devices/commands", data=command).status_code == 400
    forged = client.post("/console/devices/commands", data={**command, "csrf_token": "0" * 64})
    assert forged.status_code == 400
    token = csrf_of(client.get("/console/devices").data)
    foreign = client.post(
        "/console/devices/commands",
        data={**command, "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 400
    ok = client.post("/console/devices/commands", data={**command, "csrf_token": token})
    assert ok.status_code == 302
    with session_factory() as session:
        queued = [
            e.action for e in session.scalars(select(AuditEvent).where(AuditEvent.action == "command.queued"))
        ]
    assert queued == ["command.queued"]  # only the post with a valid token did anything


def test_security_headers(client: Any, tree: Any) -> None:
    for path in ("/console/login", "/api/v1/openapi.json", "/api/v1/devices", "/console/no-such-page"):
        headers = client.get(path).headers
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
    page = client.get("/console/login").get_data(as_text=True)
    assert "<script>" not in page and " on" + "click=" not in page and "style=" not in page


@pytest.mark.parametrize(
    ("public_url", "secure"), [("https://mdm.example.jp", True), ("http://10.0.0.5:8000", False)]
)
def test_session_cookie_flags(
    public_url: str, secure: bool, settings: Any, device_ca: Any, session_factory: Any
) -> None:
    from mdm import create_app

    # A plain-http lab address needs the explicit development mode (mdm/ground/transport.py).
    application = create_app(
        replace(
            settings,
            public_url=public_url,
            device_ca_file=str(device_ca.path),
            dev_insecure_http=public_url.startswith("http://"),
        )
    )
    try:
        with session_factory() as session:
            account = make_user(session, settings, "cookie", "auditor")
        client = application.test_client()
        page = client.get("/console/login")
        response = client.post(
            "/console/login",
            data={"username": account.username, "password": PASSWORD, "csrf_token": csrf_of(page.data)},
        )
        cookie = next(h for h in response.headers.getlist("Set-Cookie") if "hikeshi_session=" in h)
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
        assert ("Secure" in cookie) is secure
        assert cookie.startswith("__Host-hikeshi_session=") is secure
        if secure:
            assert "max-age=31536000" in response.headers["Strict-Transport-Security"]
    finally:
        application.extensions["hikeshi"].dispatcher.close()
        application.extensions["hikeshi"].engine.dispose()
