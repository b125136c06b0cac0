"""`hikeshi user …` and `hikeshi token …`, and the first-administrator bootstrap."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from mdm.ground.models import ApiToken, AuditEvent, User
from mdm.roots.cli import main
from tests.web.helpers import bearer, csrf_of


@pytest.fixture
def cli(settings: Any, monkeypatch: Any) -> Any:
    monkeypatch.setenv("HIKESHI_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HIKESHI_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("HIKESHI_SECRET_KEY", settings.secret_key)
    runner = CliRunner()
    return lambda *args: runner.invoke(main, list(args), catch_exceptions=False)


def _password(output: str) -> str:
    return output.split("one-time password for ")[1].split(": ", 1)[1].split()[0]


def test_bootstrap_creates_the_first_admin_once(cli: Any, client: Any, session_factory: Any) -> None:
    first = cli("user", "bootstrap")
    assert first.exit_code == 0, first.output
    password = _password(first.output)
    again = cli("user", "bootstrap")
    assert (
        again.exit_code == 0 and "already exist" in again.output and "one-time password" not in again.output
    )
    with session_factory() as session:
        admin = session.scalars(select(User)).one()
        assert (admin.username, admin.role, admin.must_change_password) == ("admin", "admin", True)
        assert password not in admin.password_hash and admin.password_hash.startswith("$argon2id$")
    page = client.get("/console/login")
    response = client.post(
        "/console/login", data={"username": "admin", "password": password, "csrf_token": csrf_of(page.data)}
    )
    assert response.status_code == 302
    assert client.get("/console/dashboard").headers["Location"].endswith("/console/account/password")


def test_user_and_token_commands(cli: Any, client: Any, tree: Any, session_factory: Any) -> None:
    made = cli("user", "create", "--name", "Hotline1", "--role", "operator", "--unit", "ST-A")
    assert made.exit_code == 0, made.output
    assert len(_password(made.output)) == 23
    assert cli("user", "create", "--name", "hotline1", "--role", "operator").exit_code == 2  # taken
    assert cli("user", "create", "--name", "x2", "--role", "operator", "--unit", "NOPE").exit_code == 2
    assert cli("user", "disable", "hotline1").exit_code == 0
    listed = cli("user", "list")
    assert "hotline1" in listed.output and "disabled" in listed.output
    with session_factory() as session:
        user = session.scalars(select(User).where(User.username == "hotline1")).one()
        assert user.org_unit_id == tree.station_a.id and user.disabled_at is not None

    # A token belongs to exactly one person or one service account.
    assert cli("token", "create", "--name", "x", "--role", "dispatch").exit_code == 2
    assert cli("token", "create", "--name", "x", "--role", "admin", "--owner", "nobody").exit_code == 1
    token = cli(
        "token", "create", "--name", "指令システム", "--role", "dispatch", "--days", "30",
        "--service-account", "dispatch-center",
    )  # fmt: skip
    assert token.exit_code == 0, token.output
    text = token.output.splitlines()[0]
    assert client.get("/api/v1/devices", headers=bearer(text)).status_code == 200
    public_id = text.split("_")[1]
    assert public_id in cli("token", "list").output
    assert cli("token", "revoke", public_id).exit_code == 0
    assert client.get("/api/v1/devices", headers=bearer(text)).status_code == 401
    with session_factory() as session:
        row = session.scalars(select(ApiToken).where(ApiToken.public_id == public_id)).one()
        assert text not in row.token_hash and row.revoked_by and row.revoked_by.startswith("cli:")
        actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.actor.startswith("cli:"))))
    assert actions == ["user.created", "user.disabled", "api_token.created", "api_token.revoked"]
