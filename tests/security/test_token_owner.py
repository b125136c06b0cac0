"""Issue 13, item 6: an API token answers for a person (its owner) or a named service account, and a
person's tokens stop working the moment the person is disabled or removed; a token never does
more than its owner's role allows now. Also: how the migration attributes tokens made before it."""

from __future__ import annotations

from typing import Any

from alembic import command
from sqlalchemy import delete, select, text

from mdm.ground.models import ApiToken, User
from tests.security.tables_h13b import snapshot
from tests.support.factories import make_device
from tests.support.migrations import database_at
from tests.web.helpers import bearer, make_token, make_user


def _me(client: Any, token: str) -> Any:
    return client.get("/api/v1/me", headers=bearer(token))


def test_a_disabled_users_token_gets_401_at_once(
    client: Any, engine: Any, session_factory: Any, settings: Any
) -> None:
    with session_factory() as session:
        chief = make_token(session, "admin")
        taro = make_user(session, settings, "taro", "operator")
        his = make_token(session, "operator", owner_id=taro.user_id)
        make_device(session)
        session.commit()
    assert _me(client, his).status_code == 200
    patched = client.patch(f"/api/v1/users/{taro.user_id}", headers=bearer(chief), json={"disabled": True})
    assert patched.status_code == 200
    before = snapshot(engine)
    for method, path in (("GET", "/api/v1/devices"), ("GET", "/api/v1/me"), ("POST", "/api/v1/incidents")):
        response = client.open(
            path, method=method, headers=bearer(his), json={"device_id": 1, "caller_name": "x"}
        )
        assert response.status_code == 401, (path, response.get_json())
        assert "owner is disabled" in response.get_json()["error"]["message"]
    assert snapshot(engine) == before
    # Enabled again: the token works again (it was never revoked, only its person was out).
    client.patch(f"/api/v1/users/{taro.user_id}", headers=bearer(chief), json={"disabled": False})
    assert _me(client, his).status_code == 200


def test_a_removed_users_token_gets_401(
    client: Any, engine: Any, session_factory: Any, settings: Any
) -> None:
    with session_factory() as session:
        taro = make_user(session, settings, "taro", "operator")
        his = make_token(session, "operator", owner_id=taro.user_id)
    assert _me(client, his).status_code == 200
    with session_factory() as session:
        session.execute(delete(User).where(User.id == taro.user_id))
        session.commit()
        token = session.scalars(select(ApiToken)).one()
        assert token.owner_user_id is None and token.service_account is None
    before = snapshot(engine)
    response = _me(client, his)
    assert response.status_code == 401
    assert "owner no longer exists" in response.get_json()["error"]["message"]
    assert snapshot(engine) == before


def test_a_token_never_does_more_than_its_owner_may_now(
    client: Any, session_factory: Any, settings: Any
) -> None:
    with session_factory() as session:
        chief = make_token(session, "admin")
        hanako = make_user(session, settings, "hanako", "admin")
        hers = make_token(session, "admin", owner_id=hanako.user_id)
    assert client.get("/api/v1/users", headers=bearer(hers)).status_code == 200
    # Demoted to operator: her admin token keeps only what an operator may do.
    demoted = client.patch(
        f"/api/v1/users/{hanako.user_id}", headers=bearer(chief), json={"role": "operator"}
    )
    assert demoted.status_code == 200
    assert client.get("/api/v1/users", headers=bearer(hers)).status_code == 403
    assert client.get("/api/v1/devices", headers=bearer(hers)).status_code == 200


def test_tokens_made_through_the_api_belong_to_the_caller_or_a_named_service_account(
    client: Any, session_factory: Any, settings: Any
) -> None:
    with session_factory() as session:
        hanako = make_user(session, settings, "hanako", "admin")
        hers = make_token(session, "admin", owner_id=hanako.user_id)
        robot = make_token(session, "admin", service_account="ops-robot")
    made = client.post("/api/v1/api-tokens", headers=bearer(hers), json={"name": "mine", "role": "approver"})
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["owner_user_id"] == hanako.user_id and made.get_json()["service_account"] is None
    dispatch = client.post(
        "/api/v1/api-tokens",
        headers=bearer(hers),
        json={"name": "指令台", "role": "dispatch", "service_account": "dispatch-center"},
    )
    assert dispatch.status_code == 201
    assert (
        dispatch.get_json()["owner_user_id"] is None
        and dispatch.get_json()["service_account"] == "dispatch-center"
    )
    # A service account cannot mint a personal token: it is nobody.
    refused = client.post("/api/v1/api-tokens", headers=bearer(robot), json={"name": "x", "role": "admin"})
    assert refused.status_code == 400 and "owner" in refused.get_json()["error"]["fields"]
    bad = client.post(
        "/api/v1/api-tokens",
        headers=bearer(hers),
        json={"name": "x", "role": "dispatch", "service_account": "A B"},
    )
    assert bad.status_code == 400 and "service_account" in bad.get_json()["error"]["fields"]


def test_the_migration_attributes_existing_tokens_to_a_user_or_a_legacy_service_account() -> None:
    with database_at("0002") as (cfg, old):
        with old.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (id, username, display_name, role, password_hash,"
                    " must_change_password, created_at, created_by)"
                    " VALUES (7, 'alice', '', 'admin', 'x', 0, '2026-01-01', '')"
                )
            )
            for pid, created_by in (("aaaa", "cli:root"), ("bbbb", "user:alice"), ("cccc", "token:aaaa:x")):
                conn.execute(
                    text(
                        "INSERT INTO api_tokens (public_id, token_hash, name, role, created_by, created_at,"
                        " expires_at) VALUES (:p, :h, 'n', 'admin', :c, '2026-01-01', '2027-01-01')"
                    ),
                    {"p": pid, "h": pid * 16, "c": created_by},
                )
        command.upgrade(cfg, "head")
        with old.connect() as conn:
            found = conn.execute(text("SELECT public_id, owner_user_id, service_account FROM api_tokens"))
            rows = {pid: (owner, account) for pid, owner, account in found}
    assert rows == {
        "aaaa": (None, "legacy:aaaa"),
        "bbbb": (7, None),
        "cccc": (None, "legacy:cccc"),
    }
