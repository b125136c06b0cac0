"""Profile pages of the console: who may open them, creating from a template, assigning and
unassigning (with confirmation), the preview with its "not supported" report, the export."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from mdm.ground.models import Command, Profile, ProfileAssignment
from tests.web.helpers import csrf_of, login, make_user, post_form

ROLES = ("admin", "operator", "approver", "auditor")
READERS = {"admin", "auditor"}


@pytest.fixture
def accounts(session_factory: Any, settings: Any, tree: Any) -> dict[str, Any]:
    with session_factory() as session:
        return {role: make_user(session, settings, f"{role}1", role) for role in ROLES}


def _create_from_template(client: Any, **extra: str) -> Any:
    form = {"source": "template", "template": "field-standard", "identifier": "jp.example.fd.base", **extra}
    return post_form(client, "/console/profiles", form)


@pytest.mark.parametrize("role", ROLES)
def test_profile_pages_by_role(app: Any, accounts: dict[str, Any], tree: Any, role: str) -> None:
    admin = app.test_client()
    login(admin, accounts["admin"])
    created = _create_from_template(admin)
    assert created.status_code == 302
    profile_path = created.headers["Location"]
    # The same TOTP code is never accepted twice: the admin keeps its first session.
    client = admin if role == "admin" else app.test_client()
    if role != "admin":
        login(client, accounts[role])
    for path in ("/console/profiles", profile_path):
        status = client.get(path).status_code
        assert status == (200 if role in READERS else 403), f"{role} {path}: {status}"
    nav = client.get("/console/dashboard").get_data(as_text=True)
    assert ('id="nav-profiles"' in nav) == (role in READERS)
    if role != "admin":
        page = client.get("/console/dashboard").data
        refused = client.post(
            "/console/profiles",
            data={
                "source": "template",
                "template": "strict",
                "identifier": "jp.x.y",
                "csrf_token": csrf_of(page),
            },
        )
        assert refused.status_code == 403
        assert client.get(profile_path + "/export/apple").status_code == 403


def test_admin_creates_assigns_previews_and_unassigns(
    app: Any, accounts: dict[str, Any], tree: Any, session: Any
) -> None:
    client = app.test_client()
    login(client, accounts["admin"])
    bad = _create_from_template(client, identifier="not an identifier")
    assert bad.status_code == 400 and "identifier" in bad.get_data(as_text=True)
    created = _create_from_template(client, name_ja="中央署標準")
    assert created.status_code == 302
    path = created.headers["Location"]
    page = client.get(path).get_data(as_text=True)
    assert "中央署標準" in page
    # Preview: the Apple plist, the Android policy, and what Android cannot express.
    assert "com.apple.mobiledevice.passwordpolicy" in page
    assert "passwordMinimumLength" in page
    assert 'id="unsupported-android"' in page and "restrictions.1.allow_airdrop" in page

    assigned = post_form(client, path + "/assign", {"org_unit_id": str(tree.station_a.id)}, page=path)
    assert assigned.status_code == 302
    session.rollback()
    profile = session.scalars(select(Profile)).one()
    assert [a.org_unit_id for a in session.scalars(select(ProfileAssignment))] == [tree.station_a.id]
    installs = session.scalars(select(Command).where(Command.request_type == "InstallProfile")).all()
    assert [c.device_id for c in installs] == [tree.device_a.id]
    page = client.get(path).get_data(as_text=True)
    assert f'id="unassign-{tree.station_a.id}"' in page

    unassign = path + f"/unassign/{tree.station_a.id}"
    ask = post_form(client, unassign, {}, page=path)
    assert ask.status_code == 200 and 'id="confirm-button"' in ask.get_data(as_text=True)
    done = client.post(unassign, data={"confirmed": "yes", "csrf_token": csrf_of(ask.data)})
    assert done.status_code == 302
    session.rollback()
    assert session.scalars(select(ProfileAssignment)).all() == []

    # A new version through the spec editor; a bad one names the field.
    spec = dict(profile.spec)
    spec["payloads"] = [{**spec["payloads"][0], "settings": {"min_length": 0}}]
    refused = post_form(client, path, {"spec": json.dumps(spec)})
    assert refused.status_code == 400 and "payloads.0.settings.min_length" in refused.get_data(as_text=True)
    spec["payloads"] = [{**spec["payloads"][0], "settings": {"min_length": 8}}]
    saved = post_form(client, path, {"spec": json.dumps(spec)})
    assert saved.status_code == 302
    session.rollback()
    session.expire_all()
    assert session.scalars(select(Profile)).one().version == 2

    export = client.get(path + "/export/apple")
    assert export.status_code == 200
    assert export.content_type == "application/x-apple-aspen-config"
    android = client.get(path + "/export/android")
    assert json.loads(android.data)["passwordPolicies"][0]["passwordMinimumLength"] == 8


def test_the_pages_speak_japanese(app: Any, accounts: dict[str, Any], tree: Any) -> None:
    client = app.test_client()
    login(client, accounts["admin"])
    path = _create_from_template(client).headers["Location"]
    listing = client.get("/console/profiles").get_data(as_text=True)
    assert "構成プロファイル" in listing and "テンプレートから新しいプロファイルを作成" in listing
    detail = client.get(path).get_data(as_text=True)
    assert "このプラットフォームでは設定できない項目" in detail and "バージョン履歴" in detail


def test_a_template_profile_gets_an_offered_identifier_and_no_unit_by_default(
    app: Any, accounts: dict[str, Any], tree: Any, session: Any, settings: Any
) -> None:
    from web.console.profiles import identifier_base

    assert identifier_base("https://mdm.fd.example.jp") == "jp.example.fd.mdm"
    assert identifier_base("https://127.0.0.1:8443") == "local.hikeshi"
    client = app.test_client()
    login(client, accounts["admin"])
    page = client.get("/console/profiles").get_data(as_text=True)
    base = identifier_base(settings.public_url)
    assert f'data-identifier="{base}.myna-kyukyu"' in page and "js/profiles.js" in page
    # Left blank, the identifier offered for the template is used; the next one is numbered.
    first = post_form(
        client, "/console/profiles", {"source": "template", "template": "myna-kyukyu", "identifier": ""}
    )
    assert first.status_code == 302
    assert f'data-identifier="{base}.myna-kyukyu-2"' in client.get("/console/profiles").get_data(as_text=True)
    session.rollback()
    assert session.scalars(select(Profile.identifier)).all() == [f"{base}.myna-kyukyu"]
    # The assignment form chooses no unit until the user does; posting without one names the field.
    path = first.headers["Location"]
    detail = client.get(path).get_data(as_text=True)
    assert '<select name="org_unit_id" id="assign-unit" required><option value="">' in detail
    refused = post_form(client, path + "/assign", {"org_unit_id": ""}, page=path)
    assert refused.status_code == 400 and "割り当て先の組織を選んでください" in refused.get_data(as_text=True)
    session.rollback()
    assert session.scalars(select(ProfileAssignment)).all() == []
