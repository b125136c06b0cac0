"""The profiles REST API: write, validate, preview, export, assign within scope, per-device states."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mdm.ground.models import AuditEvent, Command, Profile
from tests.profiles.samples import spec_with, station_wifi
from tests.web.helpers import bearer, live_server, make_token

PASSCODE = {"kind": "passcode", "settings": {"min_length": 6, "auto_lock_minutes": 5}}
RESTRICTIONS = {"kind": "restrictions", "settings": {"allow_camera": False, "allow_airdrop": False}}


@pytest.fixture
def admin(session_factory: Any) -> dict[str, str]:
    with session_factory() as session:
        return bearer(make_token(session, "admin"))


def _create(client: Any, headers: dict[str, str], spec: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/v1/profiles", headers=headers, json=spec)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _commands(session: Any, device_id: int) -> list[Command]:
    session.rollback()
    session.expire_all()
    return list(session.scalars(select(Command).where(Command.device_id == device_id).order_by(Command.id)))


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (
            {"kind": "restrictions", "settings": {"allow_teleport": False}},
            "payloads.0.settings.allow_teleport",
        ),
        ({"kind": "wifi", "settings": station_wifi(ssid="S" * 40)}, "payloads.0.settings.ssid"),
        (
            {"kind": "wifi", "settings": station_wifi(certificate_source=None)},
            "payloads.0.settings.certificate_source",
        ),
        ({"kind": "passcode", "settings": {"min_length": 0}}, "payloads.0.settings.min_length"),
    ],
)
def test_a_bad_payload_is_refused_naming_the_field_and_nothing_is_stored(
    client: Any, tree: Any, admin: dict[str, str], session: Any, payload: dict[str, Any], field: str
) -> None:
    for path in ("/api/v1/profiles/validate", "/api/v1/profiles"):
        response = client.post(path, headers=admin, json=spec_with(payload))
        assert response.status_code == 400, response.get_json()
        error = response.get_json()["error"]
        assert field in error["fields"], error
        assert field in error["message"]
    session.rollback()
    assert session.scalars(select(Profile)).all() == []


def test_validate_returns_the_normalized_spec_without_storing(
    client: Any, tree: Any, admin: dict[str, str], session: Any
) -> None:
    response = client.post("/api/v1/profiles/validate", headers=admin, json=spec_with(PASSCODE))
    assert response.status_code == 200
    spec = response.get_json()["spec"]
    assert spec["payloads"][0]["key"] == "passcode.1"
    assert spec["payloads"][0]["settings"]["require_alphanumeric"] is False  # default filled in
    assert spec["description"] == ""
    session.rollback()
    assert session.scalars(select(Profile)).all() == []


def test_create_assign_update_unassign_through_the_api(
    client: Any, tree: Any, admin: dict[str, str], session: Any
) -> None:
    created = _create(client, admin, spec_with(PASSCODE, RESTRICTIONS))
    assert created["version"] == 1 and [v["version"] for v in created["versions"]] == [1]
    assert [p["kind"] for p in created["payloads"]] == ["passcode", "restrictions"]
    profile_id = created["id"]

    assigned = client.post(
        f"/api/v1/profiles/{profile_id}/assignments", headers=admin, json={"org_unit_id": tree.station_a.id}
    )
    assert assigned.status_code == 201, assigned.get_json()
    body = assigned.get_json()
    assert body["assignment"]["org_unit_id"] == tree.station_a.id
    # device_a is in unit A1 below station A: one install; device_b (station B) is untouched.
    assert body["reconcile"] == {"devices": 1, "installs": 1, "removals": 0, "cancelled": 0}
    assert [c.request_type for c in _commands(session, tree.device_a.id)] == ["InstallProfile"]
    assert _commands(session, tree.device_b.id) == []
    again = client.post(
        f"/api/v1/profiles/{profile_id}/assignments", headers=admin, json={"org_unit_id": tree.station_a.id}
    )
    assert again.status_code == 400 and "org_unit_id" in again.get_json()["error"]["fields"]

    states = client.get(f"/api/v1/devices/{tree.device_a.id}/profiles", headers=admin).get_json()
    assert [
        (s["identifier"], s["desired_version"], s["installed_version"], s["pending_action"]) for s in states
    ] == [("jp.example.fd.test", 1, None, "install")]

    listed = client.get(f"/api/v1/profiles/{profile_id}/assignments", headers=admin).get_json()
    assert [a["org_unit_id"] for a in listed] == [tree.station_a.id]

    changed = spec_with({"kind": "passcode", "settings": {"min_length": 8}}, RESTRICTIONS)
    updated = client.put(f"/api/v1/profiles/{profile_id}", headers=admin, json=changed)
    assert updated.status_code == 200, updated.get_json()
    body = updated.get_json()
    assert body["version"] == 2 and [v["version"] for v in body["versions"]] == [1, 2]
    # The undelivered v1 install is replaced by one of v2.
    assert body["reconcile"] == {"devices": 1, "installs": 1, "removals": 0, "cancelled": 1}
    same = client.put(f"/api/v1/profiles/{profile_id}", headers=admin, json=changed).get_json()
    assert same["version"] == 2 and same["reconcile"] is None
    renamed = client.put(
        f"/api/v1/profiles/{profile_id}", headers=admin, json={**changed, "identifier": "jp.example.other"}
    )
    assert renamed.status_code == 400 and "identifier" in renamed.get_json()["error"]["fields"]

    removed = client.delete(f"/api/v1/profiles/{profile_id}/assignments/{tree.station_a.id}", headers=admin)
    assert removed.status_code == 200
    assert removed.get_json()["reconcile"]["cancelled"] == 1
    assert (
        client.delete(
            f"/api/v1/profiles/{profile_id}/assignments/{tree.station_a.id}", headers=admin
        ).status_code
        == 404
    )

    session.rollback()
    actions = [
        e.action
        for e in session.scalars(
            select(AuditEvent).where(AuditEvent.target_type == "profile").order_by(AuditEvent.id)
        )
    ]
    assert actions == [
        "profile.created",
        "profile.assigned",
        "profile.updated",
        "profile.version_applied",  # v2's install queued (one event, not one per device)
        "profile.unassigned",
    ]


def test_preview_shows_both_platforms_and_what_they_cannot_express(
    client: Any, tree: Any, admin: dict[str, str]
) -> None:
    created = _create(client, admin, spec_with(PASSCODE, RESTRICTIONS))
    preview = client.get(f"/api/v1/profiles/{created['id']}/preview", headers=admin)
    assert preview.status_code == 200
    body = preview.get_json()
    assert body["apple"]["content"].startswith("<?xml")
    assert "com.apple.applicationaccess" in body["apple"]["content"]
    assert body["android"]["content"]["cameraAccess"] == "CAMERA_ACCESS_DISABLED"
    assert {(u["payload"], u["field"]) for u in body["android"]["unsupported"]} == {
        ("restrictions.1", "allow_airdrop")
    }
    missing = client.get(f"/api/v1/profiles/{created['id']}/preview?version=7", headers=admin)
    assert missing.status_code == 400 and "version" in missing.get_json()["error"]["fields"]


def test_export_is_a_signed_mobileconfig_or_the_policy_json(
    client: Any, tree: Any, admin: dict[str, str], tmp_path: Path
) -> None:
    created = _create(client, admin, spec_with(PASSCODE))
    apple = client.get(f"/api/v1/profiles/{created['id']}/export", headers=admin)
    assert apple.status_code == 200
    assert apple.content_type == "application/x-apple-aspen-config"
    assert apple.data[:1] == b"\x30"  # DER CMS SignedData
    assert b"com.apple.mobiledevice.passwordpolicy" in apple.data
    android = client.get(f"/api/v1/profiles/{created['id']}/export?platform=android", headers=admin)
    assert android.status_code == 200 and android.content_type == "application/json"
    assert json.loads(android.data)["passwordPolicies"][0]["passwordMinimumLength"] == 6


def test_templates_are_listed_and_a_profile_starts_from_one(
    client: Any, tree: Any, admin: dict[str, str]
) -> None:
    templates = client.get("/api/v1/profile-templates", headers=admin).get_json()
    slugs = {t["slug"] for t in templates}
    assert {"field-standard", "strict", "station-wifi"} <= slugs
    created = client.post(
        "/api/v1/profiles/from-template",
        headers=admin,
        json={"template": "station-wifi", "identifier": "jp.example.fd.wifi", "name_ja": "北署Wi-Fi"},
    )
    assert created.status_code == 201
    assert created.get_json()["name_ja"] == "北署Wi-Fi"
    assert created.get_json()["payloads"][0]["kind"] == "wifi"
    unknown = client.post(
        "/api/v1/profiles/from-template", headers=admin, json={"template": "nope", "identifier": "jp.a.b"}
    )
    assert unknown.status_code == 400 and "template" in unknown.get_json()["error"]["fields"]


def test_nobody_sees_a_wifi_passphrase_and_readers_cannot_export(
    client: Any, tree: Any, admin: dict[str, str], session_factory: Any
) -> None:
    with session_factory() as session:
        auditor = bearer(make_token(session, "auditor"))
    psk = {"ssid": "FD-GUEST", "security": "wpa2_personal", "password": "s3cret-passphrase"}
    created = _create(client, admin, spec_with({"kind": "wifi", "settings": psk}))
    # Not even the administrator who typed it: it is sealed and shown as ********.
    assert created["spec"]["payloads"][0]["settings"]["password"] == "********"
    assert created["secrets_redacted"] is True
    seen = client.get(f"/api/v1/profiles/{created['id']}", headers=auditor).get_json()
    assert seen["secrets_redacted"] is True
    assert seen["spec"]["payloads"][0]["settings"]["password"] == "********"
    preview = client.get(f"/api/v1/profiles/{created['id']}/preview", headers=auditor).get_data(as_text=True)
    assert "s3cret-passphrase" not in preview
    assert client.get(f"/api/v1/profiles/{created['id']}/export", headers=auditor).status_code == 403


def test_a_scoped_admin_assigns_only_inside_its_units(
    client: Any, tree: Any, admin: dict[str, str], session_factory: Any
) -> None:
    with session_factory() as session:
        scoped = bearer(make_token(session, "admin", org_unit_id=tree.station_a.id))
    shared = _create(client, admin, spec_with(PASSCODE, identifier="jp.example.fd.shared"))
    assert (
        client.post(
            f"/api/v1/profiles/{shared['id']}/assignments",
            headers=admin,
            json={"org_unit_id": tree.station_b.id},
        ).status_code
        == 201
    )
    outside = client.post(
        f"/api/v1/profiles/{shared['id']}/assignments",
        headers=scoped,
        json={"org_unit_id": tree.station_b.id},
    )
    assert outside.status_code == 400 and "org_unit_id" in outside.get_json()["error"]["fields"]
    inside = client.post(
        f"/api/v1/profiles/{shared['id']}/assignments", headers=scoped, json={"org_unit_id": tree.unit_a1.id}
    )
    assert inside.status_code == 201
    # The scoped admin sees only its own assignment, and cannot change a profile that reaches
    # devices outside its units, nor take it off station B.
    listed = client.get(f"/api/v1/profiles/{shared['id']}/assignments", headers=scoped).get_json()
    assert [a["org_unit_id"] for a in listed] == [tree.unit_a1.id]
    update = client.put(
        f"/api/v1/profiles/{shared['id']}",
        headers=scoped,
        json=spec_with(
            {"kind": "passcode", "settings": {"min_length": 9}}, identifier="jp.example.fd.shared"
        ),
    )
    assert update.status_code == 403
    assert (
        client.delete(
            f"/api/v1/profiles/{shared['id']}/assignments/{tree.station_b.id}", headers=scoped
        ).status_code
        == 404
    )
    assert client.get(f"/api/v1/devices/{tree.device_b.id}/profiles", headers=scoped).status_code == 404


def test_schemathesis_on_the_profile_operations(
    app: Any, tree: Any, session_factory: Any, tmp_path: Path
) -> None:
    """The profile operations alone, with more examples than the whole-API run gives them."""
    schemathesis = Path(sys.executable).with_name("schemathesis")
    if not schemathesis.exists():
        pytest.fail("schemathesis is not installed in the virtualenv (pip install -e '.[test]')")
    with session_factory() as session:
        token = make_token(session, "admin", name="schemathesis")
    with live_server(app) as base:
        result = subprocess.run(
            [
                str(schemathesis),
                "run",
                f"{base}/api/v1/openapi.json",
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,"
                "response_schema_conformance",
                "--include-path-regex",
                "profile",
                "--max-examples",
                "40",
                "--seed",
                "20261123",
                "--workers",
                "1",
                "--request-timeout",
                "30",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert "Tested: 1" in output, output[-4000:]  # the profile operations were selected and run
