"""Account lockout without a denial of service: anyone can lock a name with wrong passwords, but
a TOTP user still signs in with password and code together, an administrator can unlock (API,
console, CLI; audited), each source address is throttled on its own, and parallel wrong
passwords are counted exactly (real threads against a real server, SQLite and PostgreSQL)."""

# ruff: noqa: F811  (the `tree` fixture is imported from tests/web and used as a parameter)
from __future__ import annotations

import gc
import threading
from dataclasses import replace
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from mdm.ground.models import AuditEvent
from mdm.ground.models.user import LoginThrottle
from mdm.roots.cli import main
from tests.web.conftest import tree  # noqa: F401  (fixture)
from tests.web.helpers import PASSWORD, bearer, csrf_of, live_app, login, make_token, make_user, post_form
from web.auth.lockout import SOURCE_THRESHOLD, THRESHOLD

ATTACKER = {"REMOTE_ADDR": "198.51.100.66"}
OPERATOR_DESK = {"REMOTE_ADDR": "10.20.0.15"}


def _try(client: Any, username: str, password: str, *, code: str | None = None, env: Any = None) -> Any:
    page = client.get("/console/login", environ_base=env or {})
    data = {"username": username, "password": password, "csrf_token": csrf_of(page.data)}
    if code is not None:
        data["code"] = code
    return client.post("/console/login", data=data, environ_base=env or {})


def _reasons(session_factory: Any) -> list[Any]:
    with session_factory() as session:
        return [
            e.details.get("reason")
            for e in session.scalars(
                select(AuditEvent).where(AuditEvent.action.startswith("auth.login")).order_by(AuditEvent.id)
            )
        ]


def _lock_out(app: Any, username: str) -> None:
    attacker = app.test_client()
    for _ in range(THRESHOLD):
        assert _try(attacker, username, "guess guess guess", env=ATTACKER).status_code == 401


def test_totp_user_signs_in_past_a_lock_with_password_and_code(
    app: Any, session_factory: Any, settings: Any, frozen_clock: Any, tree: Any
) -> None:
    with session_factory() as session:
        admin = make_user(session, settings, "hotline-admin", "admin")
    _lock_out(app, "hotline-admin")
    client = app.test_client()
    # The right password alone is refused with the lock's message, exactly like a wrong one.
    right_alone = _try(client, "hotline-admin", PASSWORD, env=OPERATOR_DESK)
    wrong_alone = _try(client, "hotline-admin", "not it at all", env=OPERATOR_DESK)
    assert right_alone.status_code == wrong_alone.status_code == 401
    assert right_alone.data.replace(b"not it at all", b"") == wrong_alone.data.replace(b"not it at all", b"")
    assert "ロック中でもサインインできます" in right_alone.get_data(as_text=True)
    # A wrong password with a right code, and a right password with a wrong code: refused.
    assert _try(client, "hotline-admin", "not it", code=admin.code(), env=OPERATOR_DESK).status_code == 401
    assert _try(client, "hotline-admin", PASSWORD, code="000000", env=OPERATOR_DESK).status_code == 401
    # Both right: signed in, second factor done, straight to the dashboard.
    response = _try(client, "hotline-admin", PASSWORD, code=admin.code(), env=OPERATOR_DESK)
    assert response.status_code == 302, response.data[:400]
    assert client.get("/console/dashboard", environ_base=OPERATOR_DESK).status_code == 200
    reasons = _reasons(session_factory)
    assert reasons[:THRESHOLD] == ["bad_password"] * THRESHOLD
    assert reasons[THRESHOLD:] == ["locked"] * 4 + [None]


def test_a_user_without_totp_is_unlocked_by_an_administrator_through_the_api(
    app: Any, session_factory: Any, settings: Any, frozen_clock: Any, tree: Any
) -> None:
    with session_factory() as session:
        user_id = make_user(session, settings, "operator-1", "operator").user_id
        token = make_token(session, "admin")
    _lock_out(app, "operator-1")
    client = app.test_client()
    assert _try(client, "operator-1", PASSWORD, env=OPERATOR_DESK).status_code == 401
    response = client.post(f"/api/v1/users/{user_id}/unlock", headers=bearer(token))
    assert response.status_code == 200, response.data
    assert _try(client, "operator-1", PASSWORD, env=OPERATOR_DESK).status_code == 302
    with session_factory() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "user.unlocked")).one()
    assert event.details["username"] == "operator-1" and event.details["was_locked_until"]


def test_unlock_from_the_console_and_the_cli(
    app: Any, session_factory: Any, settings: Any, frozen_clock: Any, tree: Any, monkeypatch: Any
) -> None:
    with session_factory() as session:
        admin = make_user(session, settings, "it-admin", "admin")
        operator = make_user(session, settings, "operator-2", "operator")
    _lock_out(app, "operator-2")
    console = app.test_client()
    login(console, admin)
    page = console.get(f"/console/users/{operator.user_id}").get_data(as_text=True)
    assert 'id="unlock-user"' in page
    path = f"/console/users/{operator.user_id}/unlock"
    answer = post_form(console, path, {"confirmed": "yes"}, page=f"/console/users/{operator.user_id}")
    assert answer.status_code == 302, answer.data[:300]
    assert _try(app.test_client(), "operator-2", PASSWORD, env=OPERATOR_DESK).status_code == 302

    _lock_out(app, "operator-2")
    monkeypatch.setenv("HIKESHI_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HIKESHI_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("HIKESHI_SECRET_KEY", settings.secret_key)
    result = CliRunner().invoke(main, ["user", "unlock", "operator-2"], catch_exceptions=False)
    assert result.exit_code == 0 and "unlock: operator-2 done" in result.output
    assert _try(app.test_client(), "operator-2", PASSWORD, env=OPERATOR_DESK).status_code == 302
    with session_factory() as session:
        actors = [
            e.actor for e in session.scalars(select(AuditEvent).where(AuditEvent.action == "user.unlocked"))
        ]
    assert actors[0] == "user:it-admin" and actors[1].startswith("cli:") and len(actors) == 2


def test_one_source_is_throttled_without_locking_out_the_others(
    app: Any, session_factory: Any, settings: Any, frozen_clock: Any, tree: Any
) -> None:
    with session_factory() as session:
        make_user(session, settings, "operator-3", "operator")
    attacker = app.test_client()
    # Spraying many names from one address: after SOURCE_THRESHOLD failures the address waits.
    for i in range(SOURCE_THRESHOLD):
        assert _try(attacker, f"name-{i}", "spray spray", env=ATTACKER).status_code == 401
    assert _try(attacker, "operator-3", PASSWORD, env=ATTACKER).status_code == 401
    assert _reasons(session_factory)[-1] == "source_locked"
    # The operator at the dispatch desk is another source, and the name was never locked.
    assert _try(app.test_client(), "operator-3", PASSWORD, env=OPERATOR_DESK).status_code == 302
    # The attacker's wait grows: 30 s, then 60 s after one more failure.
    frozen_clock.advance(seconds=31)
    assert _try(attacker, "name-x", "spray", env=ATTACKER).status_code == 401
    frozen_clock.advance(seconds=31)
    assert _try(attacker, "name-y", "spray", env=ATTACKER).status_code == 401
    assert _reasons(session_factory)[-2:] == ["unknown_user", "source_locked"]


def test_parallel_wrong_passwords_are_checked_at_most_threshold_times(
    session_factory: Any, settings: Any, tree: Any
) -> None:
    with session_factory() as session:
        make_user(session, settings, "target", "operator")
    attempts = 30
    statuses: list[int] = []
    barrier = threading.Barrier(attempts)
    # The burst may open a connection per attempt; pools that earlier tests let go of are freed
    # first, so what is measured is the lockout, not the server's connection limit (a CI run
    # answered one attempt 503, "too many clients already").
    gc.collect()

    def build(base: str) -> Any:
        from mdm import create_app

        return create_app(replace(settings, public_url=base))  # http on loopback: cookies not Secure

    with live_app(build) as (base, live):

        def attempt() -> None:
            with httpx.Client(base_url=base, timeout=60) as http:
                token = csrf_of(http.get("/console/login").text)
                barrier.wait()
                answer = http.post(
                    "/console/login",
                    data={"username": "target", "password": "wrong wrong wrong", "csrf_token": token},
                )
                statuses.append(answer.status_code)

        threads = [threading.Thread(target=attempt) for _ in range(attempts)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        live.extensions["hikeshi"].dispatcher.close()
        live.extensions["hikeshi"].engine.dispose()
    assert statuses == [401] * attempts
    reasons = _reasons(session_factory)
    # All 30 come from 127.0.0.1: the source admits SOURCE_THRESHOLD, the name THRESHOLD of those.
    assert reasons.count("bad_password") == THRESHOLD
    assert reasons.count("locked") == SOURCE_THRESHOLD - THRESHOLD
    assert reasons.count("source_locked") == attempts - SOURCE_THRESHOLD
    with session_factory() as session:
        counts = {row.key: row.failures for row in session.scalars(select(LoginThrottle))}
    assert counts == {"user:target": THRESHOLD, "source:127.0.0.1": SOURCE_THRESHOLD}


@pytest.mark.parametrize("threshold", [THRESHOLD])
def test_lock_durations_grow(threshold: int) -> None:
    from datetime import timedelta

    from web.auth.lockout import lock_duration

    assert lock_duration(threshold - 1) is None
    assert [lock_duration(threshold + i) for i in range(3)] == [
        timedelta(seconds=30),
        timedelta(seconds=60),
        timedelta(seconds=120),
    ]
    assert lock_duration(threshold + 40) == timedelta(minutes=30)
