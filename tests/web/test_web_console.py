"""Console pages: who may open what, and the everyday flows (devices, bulk commands, units,
enrollment tokens, users, API tokens, audit verify, settings, language)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text

from mdm.ground.models import AuditEvent, Command, EnrollmentToken, User
from tests.support.pki import issue_cert, key_pem, make_ca, pem
from tests.web.helpers import csrf_of, login, make_user, post_form
from web.console.guard import PUBLIC, STEP_ENDPOINTS

ROLES = ("admin", "operator", "approver", "auditor")
# Console endpoints without a permission of their own: before login, login steps, own account.
SELF_SERVICE = {"console.account", "console.account_recovery_codes", "console.site_root"}

# GET pages and the roles that may open them.
PAGES = {
    "/console/dashboard": set(ROLES),
    "/console/devices": set(ROLES),
    "/console/devices/{device}": set(ROLES),
    "/console/devices/{device}/commands.json": set(ROLES),
    "/console/org-units": set(ROLES),
    "/console/org-units/{unit}": set(ROLES),
    "/console/enrollment-tokens": {"admin", "auditor"},
    "/console/users": {"admin", "auditor"},
    "/console/users/{user}": {"admin", "auditor"},
    "/console/api-tokens": {"admin", "auditor"},
    "/console/audit": {"admin", "auditor"},
    "/console/audit/export?format=csv": {"admin", "auditor"},
    "/console/settings": {"admin", "auditor"},
    "/console/account": set(ROLES),
    "/console/hotline": set(ROLES),
    "/console/alerts": {"admin", "operator", "auditor"},
    "/console/apps": set(ROLES),
    "/console/continuity": {"admin", "operator", "auditor"},
    "/console/continuity/units/{unit}/plan": {"admin", "operator", "auditor"},
    "/console/profiles": {"admin", "auditor"},
}


def test_every_console_view_declares_a_permission(app: Any) -> None:
    unguarded = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("console."):
            continue
        in_step = any(rule.endpoint in names for names in STEP_ENDPOINTS.values())
        if rule.endpoint in PUBLIC or in_step or rule.endpoint in SELF_SERVICE:
            continue
        view = app.view_functions[rule.endpoint]
        if getattr(view, "_hikeshi_permission", None) is None:
            unguarded.append(rule.endpoint)
    assert unguarded == []


@pytest.fixture
def accounts(session_factory: Any, settings: Any, tree: Any) -> dict[str, Any]:
    with session_factory() as session:
        return {role: make_user(session, settings, f"{role}1", role) for role in ROLES}


@pytest.mark.parametrize("role", ROLES)
def test_page_matrix(app: Any, accounts: dict[str, Any], tree: Any, role: str) -> None:
    client = app.test_client()
    login(client, accounts[role])
    values = {"device": tree.device_a.id, "unit": tree.unit_a1.id, "user": accounts["operator"].user_id}
    for template, allowed in PAGES.items():
        path = template.format(**values)
        status = client.get(path).status_code
        assert status == (200 if role in allowed else 403), f"{role} {path}: {status}"


def test_unauthenticated_pages_redirect_to_login(client: Any, tree: Any) -> None:
    for template in PAGES:
        path = template.format(device=tree.device_a.id, unit=tree.unit_a1.id, user=1)
        response = client.get(path)
        assert response.status_code in (302, 401), path
        if response.status_code == 302:
            assert "/console/login" in response.headers["Location"]


def test_operator_locks_devices_in_bulk_after_confirmation(
    app: Any, accounts: dict[str, Any], tree: Any, session_factory: Any
) -> None:
    client = app.test_client()
    login(client, accounts["operator"])
    page = client.get("/console/devices?q=iPad")
    html = page.get_data(as_text=True)
    assert "救急1 iPad" in html and "北1 iPad" in html
    assert 'value="RestartDevice"' not in html  # operators only get the hotline commands
    form = {
        "device_id": [str(tree.device_a.id), str(tree.device_b.id)],
        "request_type": "DeviceLock",
        "message": "落とし物です",
    }
    ask = client.post("/console/devices/commands", data={**form, "csrf_token": csrf_of(html)})
    question = ask.get_data(as_text=True)
    assert ask.status_code == 200 and "2台の端末" in question and "救急1 iPad" in question
    with session_factory() as session:
        assert session.scalars(select(Command)).all() == []  # nothing before confirming
    done = client.post(
        "/console/devices/commands", data={**form, "confirmed": "yes", "csrf_token": csrf_of(question)}
    )
    assert done.status_code == 302
    with session_factory() as session:
        commands = session.scalars(select(Command).order_by(Command.device_id)).all()
        assert [(c.device_id, c.request_type, c.params) for c in commands] == [
            (tree.device_a.id, "DeviceLock", {"Message": "落とし物です"}),
            (tree.device_b.id, "DeviceLock", {"Message": "落とし物です"}),
        ]
        assert {c.requested_by for c in commands} == {"user:operator1"}
    restart = client.post(
        "/console/devices/commands",
        data={
            "device_id": str(tree.device_a.id),
            "request_type": "RestartDevice",
            "confirmed": "yes",
            "csrf_token": csrf_of(html),
        },
    )
    assert restart.status_code == 403
    history = client.get(f"/console/devices/{tree.device_a.id}/commands.json").get_json()
    assert [c["status"] for c in history["commands"]] == ["queued"]
    assert history["commands"][0]["status_label"] == "送信待ち"


def test_lost_mode_from_the_device_page_takes_the_message_and_phone_fields(
    app: Any, accounts: dict[str, Any], tree: Any, session_factory: Any
) -> None:
    """Issue 19 item 1: the lock-screen fields fill EnableLostMode too (it failed on Message)."""
    client = app.test_client()
    login(client, accounts["operator"])
    path = f"/console/devices/{tree.device_a.id}"
    page = client.get(path).get_data(as_text=True)
    assert "画面ロック・紛失モード用" in page
    form = {
        "device_id": str(tree.device_a.id),
        "request_type": "EnableLostMode",
        "message": "拾得された方は消防署へ",
        "phone_number": "03-3212-2111",
        "confirmed": "yes",
        "back": path,
    }
    done = client.post("/console/devices/commands", data={**form, "csrf_token": csrf_of(page)})
    assert done.status_code == 302
    with session_factory() as session:
        [command] = session.scalars(select(Command)).all()
        assert (command.request_type, command.params) == (
            "EnableLostMode",
            {"Message": "拾得された方は消防署へ", "PhoneNumber": "03-3212-2111"},
        )
    bad = client.post(
        "/console/devices/commands",
        data={**form, "phone_number": "call me", "csrf_token": csrf_of(page)},
        follow_redirects=True,
    )
    assert "PhoneNumber" in bad.get_data(as_text=True)


def test_admin_creates_unit_enrollment_token_with_qr_and_revokes_it(
    app: Any, accounts: dict[str, Any], tree: Any, session_factory: Any
) -> None:
    client = app.test_client()
    login(client, accounts["admin"])
    created = post_form(
        client,
        "/console/org-units",
        {
            "kind": "unit",
            "name_ja": "北救急隊",
            "parent_id": str(tree.station_b.id),
            "unit_type": "ambulance",
        },
    )
    assert created.status_code == 302
    bad = post_form(client, "/console/org-units", {"kind": "unit", "name_ja": "浮いた隊"})
    assert bad.status_code == 200 and "parent" in bad.get_data(as_text=True)
    made = post_form(
        client,
        "/console/enrollment-tokens",
        {"org_unit_id": str(tree.unit_a1.id), "max_uses": "5", "expires_in_days": "3"},
    )
    html = made.get_data(as_text=True)
    assert made.status_code == 200 and "<svg" in html and "/enroll/" in html and "/sheet" in html
    with session_factory() as session:
        token = session.scalars(select(EnrollmentToken)).one()
    ask = post_form(
        client, f"/console/enrollment-tokens/{token.id}/revoke", {}, page="/console/enrollment-tokens"
    )
    assert "QRコードではタブレットを登録できなくなります" in ask.get_data(as_text=True)
    done = post_form(
        client,
        f"/console/enrollment-tokens/{token.id}/revoke",
        {"confirmed": "yes"},
        page="/console/enrollment-tokens",
    )
    assert done.status_code == 302
    with session_factory() as session:
        assert session.get(EnrollmentToken, token.id).revoked_by == "user:admin1"


def test_admin_manages_users_and_api_tokens(
    app: Any, accounts: dict[str, Any], tree: Any, session_factory: Any
) -> None:
    client = app.test_client()
    login(client, accounts["admin"])
    made = post_form(
        client,
        "/console/users",
        {"username": "watanabe", "role": "operator", "org_unit_id": str(tree.station_a.id)},
    )
    password = made.get_data(as_text=True).split('id="one-time-password">')[1].split("<")[0]
    assert len(password) == 23
    with session_factory() as session:
        user = session.scalars(select(User).where(User.username == "watanabe")).one()
        assert user.org_unit_id == tree.station_a.id and user.must_change_password
    token_page = post_form(
        client, "/console/api-tokens", {"name": "指令台", "role": "dispatch", "expires_in_days": "30"}
    )
    token_text = token_page.get_data(as_text=True).split('id="api-token-text">')[1].split("<")[0]
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token_text}"}).status_code == 200
    public_id = token_text.split("_")[1]
    ask = post_form(client, f"/console/api-tokens/{public_id}/revoke", {}, page="/console/api-tokens")
    assert "401" in ask.get_data(as_text=True)
    post_form(
        client, f"/console/api-tokens/{public_id}/revoke", {"confirmed": "yes"}, page="/console/api-tokens"
    )
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token_text}"}).status_code == 401
    myself = post_form(
        client,
        f"/console/users/{accounts['admin'].user_id}/disable",
        {"confirmed": "yes"},
        page="/console/users",
    )
    assert myself.status_code == 302
    with session_factory() as session:
        assert session.get(User, accounts["admin"].user_id).disabled_at is None  # never yourself


def test_audit_verify_button_names_the_tampered_row(
    app: Any, accounts: dict[str, Any], tree: Any, session_factory: Any
) -> None:
    client = app.test_client()
    login(client, accounts["auditor"])
    intact = post_form(client, "/console/audit/verify", {}, page="/console/audit")
    assert 'data-ok="1"' in intact.get_data(as_text=True)
    with session_factory() as session:
        victim = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "device.org_unit_assigned")
        ).first()
        session.execute(
            text("UPDATE audit_events SET details = :d WHERE id = :id"),
            {"d": '{"forged": true}', "id": victim.id},
        )
        session.commit()
    broken = post_form(client, "/console/audit/verify", {}, page="/console/audit").get_data(as_text=True)
    assert 'data-ok="0"' in broken
    assert f"イベントID {victim.id}(連番 {victim.seq})" in broken
    export = client.get("/console/audit/export?format=jsonl&action=auth.")
    assert export.status_code == 200 and b'"auth.login"' in export.data


def test_settings_upload_push_certificate(
    app: Any, accounts: dict[str, Any], tree: Any, tmp_path: Any
) -> None:
    client = app.test_client()
    login(client, accounts["admin"])
    ca, ca_key = make_ca("Apple Push Test CA")
    cert, key = issue_cert(ca, ca_key, "APSP:test", uid="com.apple.mgmt.External.11111111-2222")
    page = client.get("/console/settings").get_data(as_text=True)
    assert "APNs" in page
    import io

    upload = client.post(
        "/console/settings/push-certificate",
        data={"certificate": (io.BytesIO(pem(cert) + key_pem(key)), "push.pem"), "csrf_token": csrf_of(page)},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 302
    shown = client.get("/console/settings").get_data(as_text=True)
    assert "com.apple.mgmt.External.11111111-2222" in shown and "残り" in shown
    replace = client.post(
        "/console/settings/push-certificate",
        data={
            "certificate": (io.BytesIO(pem(cert) + key_pem(key)), "push.pem"),
            "csrf_token": csrf_of(shown),
        },
        content_type="multipart/form-data",
    )
    assert "チェックを入れてください" in replace.get_data(as_text=True)  # replacing needs the box ticked


def test_language_switch(client: Any, accounts: dict[str, Any]) -> None:
    assert "サインイン" in client.get("/console/login").get_data(as_text=True)
    response = client.get("/console/lang/en?next=/console/login")
    assert response.status_code == 302 and response.headers["Location"].endswith("/console/login")
    english = client.get("/console/login").get_data(as_text=True)
    assert "Sign in" in english and "サインイン" not in english
    assert (
        client.get("/console/lang/ja?next=https://evil.example/")
        .headers["Location"]
        .endswith("/console/dashboard")
    )
