"""Asset tag (資産番号) and user of a tablet: set over the API and the console's device page (admin
only, audited with old and new values, a duplicate tag is 409, bad input 400 naming the field), and
found by the hotline search and the devices list while the caller is on the phone."""

from __future__ import annotations

import re
from typing import Any

from click.testing import CliRunner
from sqlalchemy import select

from mdm.ground.models import AuditEvent, Device
from mdm.roots.cli import main
from tests.web.conftest import tree  # noqa: F401
from tests.web.helpers import bearer, csrf_of, login, make_token, make_user


def _tokens(session_factory: Any, **roles: dict[str, Any]) -> dict[str, dict[str, str]]:
    with session_factory() as session:
        return {name: bearer(make_token(session, name.split("_")[0], **kw)) for name, kw in roles.items()}


def _device(session_factory: Any, device_id: int) -> Device:
    with session_factory() as session:
        device = session.get(Device, device_id)
        assert device is not None
        session.expunge(device)
        return device


def _hits(html: str) -> list[int]:
    return [int(found) for found in re.findall(r'<article class="hotline-hit" data-device-id="(\d+)"', html)]


def _console(app: Any, session_factory: Any, settings: Any, username: str, role: str, **kw: Any) -> Any:
    with session_factory() as session:
        account = make_user(session, settings, username, role, **kw)
    client = app.test_client()
    login(client, account)
    return client


def test_api_sets_trims_clears_and_audits_the_labels(client, tree, session_factory):  # noqa: F811
    tokens = _tokens(session_factory, admin={}, operator={}, auditor={})
    url = f"/api/v1/devices/{tree.device_a.id}"
    response = client.patch(
        url, headers=tokens["admin"], json={"asset_tag": "  FD-0123 ", "assigned_user": " 救急3隊 隊長 "}
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["id"], body["asset_tag"], body["assigned_user"]) == (
        tree.device_a.id,
        "FD-0123",
        "救急3隊 隊長",
    )
    stored = _device(session_factory, tree.device_a.id)
    assert (stored.asset_tag, stored.assigned_user) == ("FD-0123", "救急3隊 隊長")

    # Only the user changes; a blank asset tag would clear it, null clears the user.
    assert (
        client.patch(url, headers=tokens["admin"], json={"assigned_user": "救急3隊 機関員"}).status_code
        == 200
    )
    assert _device(session_factory, tree.device_a.id).asset_tag == "FD-0123"
    cleared = client.patch(url, headers=tokens["admin"], json={"asset_tag": "", "assigned_user": None})
    assert cleared.status_code == 200
    assert (cleared.get_json()["asset_tag"], cleared.get_json()["assigned_user"]) == (None, None)

    with session_factory() as session:
        events = session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.action == "device.labels_updated", AuditEvent.target_id == str(tree.device_a.id)
            )
            .order_by(AuditEvent.id)
        ).all()
    assert [e.details for e in events] == [
        {
            "asset_tag": {"old": None, "new": "FD-0123"},
            "assigned_user": {"old": None, "new": "救急3隊 隊長"},
        },
        {"assigned_user": {"old": "救急3隊 隊長", "new": "救急3隊 機関員"}},
        {
            "asset_tag": {"old": "FD-0123", "new": None},
            "assigned_user": {"old": "救急3隊 機関員", "new": None},
        },
    ]
    assert all(e.actor.startswith("token:") and e.actor.endswith("admin test token") for e in events)
    # Least privilege: the hotline and the auditors read labels, only administrators set them.
    for role in ("operator", "auditor"):
        refused = client.patch(url, headers=tokens[role], json={"asset_tag": "FD-9"})
        assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"


def test_duplicate_asset_tag_is_409_and_bad_input_400_naming_the_field(client, tree, session_factory):  # noqa: F811
    tokens = _tokens(session_factory, admin={}, admin_scoped={"org_unit_id": tree.station_a.id})
    admin = tokens["admin"]
    a, b = f"/api/v1/devices/{tree.device_a.id}", f"/api/v1/devices/{tree.device_b.id}"
    assert client.patch(a, headers=admin, json={"asset_tag": "FD-0123"}).status_code == 200
    for tag in ("FD-0123", "fd-0123", " FD-0123"):
        duplicate = client.patch(b, headers=admin, json={"asset_tag": tag, "assigned_user": "北1隊"})
        assert duplicate.status_code == 409, duplicate.get_json()
        error = duplicate.get_json()["error"]
        assert error["code"] == "duplicate_asset_tag" and "asset_tag" in error["fields"]
    # The same tag again on its own device is no conflict.
    assert client.patch(a, headers=admin, json={"asset_tag": "FD-0123"}).status_code == 200

    bad = {
        "asset_tag": ["x" * 65, "FD\n0123", "FD\x000123", 123],
        "assigned_user": ["隊" * 129, "救急3隊\t隊長", ["list"]],
    }
    for name, values in bad.items():
        for value in values:
            response = client.patch(b, headers=admin, json={name: value})
            assert response.status_code == 400, (name, value, response.get_json())
            assert list(response.get_json()["error"]["fields"]) == [name], (name, value)
    # At the limits (after trimming) the values are accepted.
    limits = {"asset_tag": " " + "x" * 64 + " ", "assigned_user": "隊" * 128}
    assert client.patch(b, headers=admin, json=limits).status_code == 200
    empty = client.patch(b, headers=admin, json={})
    assert empty.status_code == 400 and "_schema" in empty.get_json()["error"]["fields"]
    stored = _device(session_factory, tree.device_b.id)
    # Nothing half-written by the refused requests: only the last good one is there.
    assert (stored.asset_tag, stored.assigned_user) == ("x" * 64, "隊" * 128)

    # A scoped administrator does not see (or label) a tablet outside its station.
    outside = client.patch(b, headers=tokens["admin_scoped"], json={"asset_tag": "FD-7"})
    assert outside.status_code == 404
    assert (
        client.patch(f"/api/v1/devices/{2**31 - 1}", headers=admin, json={"asset_tag": "FD-7"}).status_code
        == 404
    )


def test_console_form_sets_labels_and_shows_them_in_header_and_list(app, tree, session_factory, settings):  # noqa: F811
    admin = _console(app, session_factory, settings, "chief", "admin")
    page = f"/console/devices/{tree.device_a.id}"
    html = admin.get(page).get_data(as_text=True)
    assert 'id="labels-form"' in html and "資産番号" in html
    saved = admin.post(
        page + "/labels",
        data={"asset_tag": " FD-0123 ", "assigned_user": "救急3隊 隊長", "csrf_token": csrf_of(html)},
    )
    assert saved.status_code == 302 and saved.headers["Location"].endswith(page)
    html = admin.get(page).get_data(as_text=True)
    assert "資産番号と使用者を保存しました。" in html
    assert '<strong id="device-asset-tag">FD-0123</strong>' in html
    assert '<strong id="device-assigned-user">救急3隊 隊長</strong>' in html

    listed = admin.get("/console/devices").get_data(as_text=True)
    assert '<td class="asset-tag">FD-0123</td>' in listed and "救急3隊 隊長" in listed  # its own column
    # The devices list's text search finds a tablet by its asset tag and by its user.
    by_tag = admin.get("/console/devices?q=fd-0123").get_data(as_text=True)
    assert "救急1 iPad" in by_tag and "北1 iPad" not in by_tag
    by_user = admin.get("/console/devices?q=隊長").get_data(as_text=True)
    assert "救急1 iPad" in by_user and "北1 iPad" not in by_user

    # A duplicate tag and an overlong user are refused with a message; nothing changes.
    other = f"/console/devices/{tree.device_b.id}"
    token = csrf_of(admin.get(other).data)
    refused = admin.post(other + "/labels", data={"asset_tag": "FD-0123", "csrf_token": token})
    assert refused.status_code == 302
    assert "資産番号 FD-0123 は別の端末に登録済みです" in admin.get(other).get_data(as_text=True)
    token = csrf_of(admin.get(other).data)
    admin.post(
        other + "/labels", data={"asset_tag": "FD-9", "assigned_user": "隊" * 129, "csrf_token": token}
    )
    assert "使用者は128文字以内の1行で入力してください" in admin.get(other).get_data(as_text=True)
    stored = _device(session_factory, tree.device_b.id)
    assert (stored.asset_tag, stored.assigned_user) == (None, None)

    # Blank inputs clear the labels.
    token = csrf_of(admin.get(page).data)
    admin.post(page + "/labels", data={"asset_tag": "", "assigned_user": " ", "csrf_token": token})
    stored = _device(session_factory, tree.device_a.id)
    assert (stored.asset_tag, stored.assigned_user) == (None, None)

    # Hotline operators see the labels but get no form, and cannot post it.
    operator = _console(app, session_factory, settings, "op", "operator")
    html = operator.get(page).get_data(as_text=True)
    assert 'id="labels-form"' not in html and 'id="device-labels"' in html
    posted = operator.post(page + "/labels", data={"asset_tag": "FD-1", "csrf_token": csrf_of(html)})
    assert posted.status_code == 403


def test_hotline_finds_a_tablet_by_asset_tag_and_by_user(app, client, tree, session_factory, settings):  # noqa: F811
    admin = _tokens(session_factory, admin={})["admin"]
    labels = {
        tree.device_a.id: {"asset_tag": "FD-0123", "assigned_user": "救急3隊 隊長"},
        tree.device_b.id: {"asset_tag": "FD-0124", "assigned_user": "北ポンプ隊 小隊長"},
    }
    for device_id, body in labels.items():
        assert client.patch(f"/api/v1/devices/{device_id}", headers=admin, json=body).status_code == 200

    a, b = tree.device_a.id, tree.device_b.id
    operator = _console(app, session_factory, settings, "op", "operator")
    by_tag = operator.get("/console/hotline?q=fd-0123").get_data(as_text=True)
    assert _hits(by_tag) == [a]
    assert '<strong class="asset-tag">FD-0123</strong>' in by_tag
    assert '<strong class="assigned-user">救急3隊 隊長</strong>' in by_tag
    assert "今すぐロック" in by_tag
    assert _hits(operator.get("/console/hotline?q=救急3隊 隊長").get_data(as_text=True)) == [a]
    # "FD-012" matches both tags; typed in full, the exact tag is the one found.
    assert sorted(_hits(operator.get("/console/hotline?q=FD-012").get_data(as_text=True))) == sorted([a, b])
    assert _hits(operator.get("/console/hotline?q=fd-0124").get_data(as_text=True)) == [b]
    # LIKE wildcards are text, not patterns.
    assert _hits(operator.get("/console/hotline?q=FD_0123").get_data(as_text=True)) == []
    assert _hits(operator.get("/console/hotline?q=%25").get_data(as_text=True)) == []

    # An operator scoped to station A does not find station B's tablet even by its exact tag.
    scoped = _console(app, session_factory, settings, "op-a", "operator", org_unit_id=tree.station_a.id)
    assert _hits(scoped.get("/console/hotline?q=FD-0124").get_data(as_text=True)) == []
    assert _hits(scoped.get("/console/hotline?q=隊長").get_data(as_text=True)) == [a]

    # The API's devices list searches the labels too.
    listed = client.get("/api/v1/devices?q=小隊長", headers=admin).get_json()
    assert [d["id"] for d in listed["items"]] == [tree.device_b.id]


def test_cli_labels_a_device(tree, settings, session_factory, monkeypatch):  # noqa: F811
    for key, value in {
        "HIKESHI_DATABASE_URL": settings.database_url,
        "HIKESHI_INSTANCE_PATH": str(settings.instance_path),
        "HIKESHI_SECRET_KEY": settings.secret_key,
        "HIKESHI_PUSH_ENABLED": "0",
    }.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    device_id = str(tree.device_a.id)
    done = runner.invoke(
        main, ["devices", "label", device_id, "--asset-tag", " FD-0123 ", "--user", "救急3隊 隊長"]
    )
    assert done.exit_code == 0, done.output
    assert done.output.strip() == f"device {device_id}: asset tag FD-0123, user 救急3隊 隊長"
    stored = _device(session_factory, tree.device_a.id)
    assert (stored.asset_tag, stored.assigned_user) == ("FD-0123", "救急3隊 隊長")
    duplicate = runner.invoke(main, ["devices", "label", str(tree.device_b.id), "--asset-tag", "fd-0123"])
    assert duplicate.exit_code != 0 and "already on another device" in duplicate.output
    too_long = runner.invoke(main, ["devices", "label", device_id, "--user", "隊" * 129])
    assert too_long.exit_code != 0 and "assigned_user" in too_long.output
    assert runner.invoke(main, ["devices", "label", device_id]).exit_code != 0
    assert runner.invoke(main, ["devices", "label", "999999", "--user", "x"]).exit_code != 0
    cleared = runner.invoke(main, ["devices", "label", device_id, "--asset-tag", ""])
    assert cleared.exit_code == 0 and "asset tag -, user 救急3隊 隊長" in cleared.output
    with session_factory() as session:
        actors = session.scalars(
            select(AuditEvent.actor)
            .where(AuditEvent.action == "device.labels_updated")
            .order_by(AuditEvent.id)
        ).all()
    assert len(actors) == 2 and all(a.startswith("cli:") for a in actors)


def test_an_exact_asset_tag_is_listed_first(app, client, tree, session_factory, settings):  # noqa: F811
    admin = _tokens(session_factory, admin={})["admin"]
    # A tablet whose tag merely contains what was typed (and that would sort first) comes second.
    for device_id, tag in ((tree.device_a.id, "FD-0120"), (tree.device_b.id, "FD-012")):
        response = client.patch(f"/api/v1/devices/{device_id}", headers=admin, json={"asset_tag": tag})
        assert response.status_code == 200
    operator = _console(app, session_factory, settings, "op", "operator")
    hits = _hits(operator.get("/console/hotline?q=fd-012").get_data(as_text=True))
    assert hits == [tree.device_b.id, tree.device_a.id]
    hits = _hits(operator.get("/console/hotline?q=FD-0120").get_data(as_text=True))
    assert hits == [tree.device_a.id]
