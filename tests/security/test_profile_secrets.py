"""Issue 15 item 1: a Wi-Fi passphrase typed into a profile is sealed at rest, shown to nobody
afterwards (API, console, preview, command list), never copied into a stored rendering, a
command's parameters or the audit trail, and reaches the tablet only in the bytes handed to it
at delivery. Exports carry it, for administrators only, and are audited.

The attack: an operator, approver or auditor token reading GET /api/v1/devices/<id>/commands."""

from __future__ import annotations

import base64
import json
import plistlib
from typing import Any

import pytest
from sqlalchemy import select

from mdm.ground.audit import Actor
from mdm.ground.db import transaction
from mdm.ground.models import AuditEvent, Command, Device, Profile, ProfileRendering, ProfileVersion
from mdm.services import orgunits
from profiles.device_identity import unsigned_content
from profiles.secret_settings import is_sealed
from tests.profiles.samples import spec_with
from tests.profiles.test_assignment_e2e import ManagedIPad
from tests.security.scan import find_in, scan_database
from tests.support.apple_device import SimulatedIPad
from tests.web.helpers import bearer, make_token

PSK = "Kasai-Guest-PSK-2026"
NEW_PSK = "Kasai-Guest-PSK-2027"
SYSTEM_ACTOR = Actor("setup", "admin")


@pytest.fixture
def factory(app: Any) -> Any:
    return app.extensions["hikeshi"].session_factory


def _wifi_spec(password: str) -> dict[str, Any]:
    return spec_with(
        {
            "kind": "wifi",
            "key": "guest",
            "settings": {"ssid": "FD-GUEST", "security": "wpa2_personal", "password": password},
        },
        {"kind": "passcode", "settings": {"min_length": 6}},
        identifier="jp.example.fd.guest-wifi",
    )


def _enrolled_ipad(app: Any, device_ca: Any, factory: Any) -> tuple[ManagedIPad, int, int]:
    cert, key = device_ca.issue_identity("guest-ipad")
    ipad = SimulatedIPad(cert, key)
    client = app.test_client()
    assert ipad.checkin(client, ipad.authenticate_body()).status_code == 200
    assert ipad.checkin(client, ipad.token_update_body()).status_code == 200
    managed = ManagedIPad(ipad)
    managed.drain(client)
    with transaction(factory) as s:
        unit = orgunits.create_unit(s, {"kind": "hq", "name_ja": "本部", "code": "HQ"}, actor=SYSTEM_ACTOR)
        device = s.scalars(select(Device).where(Device.udid == ipad.udid)).one()
        orgunits.assign_device(s, device, unit, actor=SYSTEM_ACTOR)
        return managed, device.id, unit.id


def _wifi_password(signed: bytes) -> str | None:
    document = plistlib.loads(unsigned_content(signed))
    [wifi] = [p for p in document["PayloadContent"] if p["PayloadType"] == "com.apple.wifi.managed"]
    return wifi.get("Password")


def test_a_passphrase_reaches_only_the_device(app: Any, device_ca: Any, factory: Any) -> None:
    client = app.test_client()
    managed, device_id, unit_id = _enrolled_ipad(app, device_ca, factory)
    with factory() as s:
        tokens = {role: bearer(make_token(s, role)) for role in ("admin", "operator", "approver", "auditor")}
    admin = tokens["admin"]

    created = client.post("/api/v1/profiles", headers=admin, json=_wifi_spec(PSK))
    assert created.status_code == 201, created.get_json()
    assert PSK not in created.get_data(as_text=True)
    profile_id = created.get_json()["id"]
    assigned = client.post(
        f"/api/v1/profiles/{profile_id}/assignments", headers=admin, json={"org_unit_id": unit_id}
    )
    assert assigned.status_code == 201 and assigned.get_json()["reconcile"]["installs"] == 1

    # Nobody reads it back: profile, preview, validation echo, command list, for every role.
    for role, headers in tokens.items():
        for path in (
            f"/api/v1/profiles/{profile_id}",
            f"/api/v1/profiles/{profile_id}/preview",
            f"/api/v1/devices/{device_id}/commands",
        ):
            response = client.get(path, headers=headers)
            if response.status_code == 200:
                assert not find_in(response.data, {"psk": PSK}, f"{role} {path}"), (role, path)
    echoed = client.post("/api/v1/profiles/validate", headers=admin, json=_wifi_spec(PSK))
    assert echoed.status_code == 200 and PSK not in echoed.get_data(as_text=True)
    listed = client.get(f"/api/v1/devices/{device_id}/commands", headers=tokens["operator"])
    assert listed.status_code == 200 and "InstallProfile" in listed.get_data(as_text=True)

    with factory() as s:
        profile = s.get(Profile, profile_id)
        stored = profile.spec["payloads"][0]["settings"]["password"]
        assert is_sealed(stored)
        [install] = s.scalars(select(Command).where(Command.request_type == "InstallProfile")).all()
        assert install.params["DeviceIdentity"] == {"profile_id": profile_id, "version": 1}
        # The install refers to the shared signed rendering (stored once), which holds no secret.
        assert set(install.params) == {"Rendering", "DeviceIdentity"}
        shared = s.scalars(select(ProfileRendering).where(ProfileRendering.profile_id == profile_id)).one()
        assert shared.sha256 == install.params["Rendering"]["sha256"]
        assert _wifi_password(shared.content) is None
    hits, values = scan_database(factory.kw["bind"], {"psk": PSK})
    assert values > 100 and hits == []

    # The tablet gets it, in the bytes of its own delivery.
    assert managed.drain(client) == ["InstallProfile"]
    assert _wifi_password(managed.signed_payloads[-1]) == PSK
    hits, _ = scan_database(factory.kw["bind"], {"psk": PSK})
    assert hits == []

    # An edit that leaves ******** keeps it; a new passphrase replaces it; neither is stored clear.
    shown = client.get(f"/api/v1/profiles/{profile_id}", headers=admin).get_json()["spec"]
    assert shown["payloads"][0]["settings"]["password"] == "********"
    shown["description"] = "guest network for visitors"
    kept = client.put(f"/api/v1/profiles/{profile_id}", headers=admin, json=shown)
    assert kept.status_code == 200 and kept.get_json()["version"] == 2
    assert managed.drain(client) == ["InstallProfile"]
    assert _wifi_password(managed.signed_payloads[-1]) == PSK
    shown["payloads"][0]["settings"]["password"] = NEW_PSK
    changed = client.put(f"/api/v1/profiles/{profile_id}", headers=admin, json=shown)
    assert changed.status_code == 200 and changed.get_json()["version"] == 3
    assert managed.drain(client) == ["InstallProfile"]
    assert _wifi_password(managed.signed_payloads[-1]) == NEW_PSK
    hits, _ = scan_database(factory.kw["bind"], {"psk": PSK, "new psk": NEW_PSK})
    assert hits == []
    with factory() as s:
        versions = s.scalars(select(ProfileVersion).where(ProfileVersion.profile_id == profile_id)).all()
        assert [is_sealed(v.spec["payloads"][0]["settings"]["password"]) for v in versions] == [True] * 3
        assert s.scalars(select(ProfileRendering)).all()  # the shared renderings exist, without it


def test_redacted_placeholder_without_a_stored_secret_is_refused(app: Any, factory: Any) -> None:
    client = app.test_client()
    with factory() as s:
        admin = bearer(make_token(s, "admin"))
    response = client.post("/api/v1/profiles", headers=admin, json=_wifi_spec("********"))
    assert response.status_code == 400
    assert "payloads.0.settings.password" in response.get_json()["error"]["fields"]


def test_export_carries_the_passphrase_for_administrators_only_and_is_audited(
    app: Any, device_ca: Any, factory: Any
) -> None:
    client = app.test_client()
    _enrolled_ipad(app, device_ca, factory)  # the built-in CA that signs exports exists
    with factory() as s:
        admin = bearer(make_token(s, "admin"))
        auditor = bearer(make_token(s, "auditor"))
    profile_id = client.post("/api/v1/profiles", headers=admin, json=_wifi_spec(PSK)).get_json()["id"]
    assert client.get(f"/api/v1/profiles/{profile_id}/export", headers=auditor).status_code == 403
    apple = client.get(f"/api/v1/profiles/{profile_id}/export?platform=apple", headers=admin)
    assert apple.status_code == 200 and _wifi_password(apple.data) == PSK
    android = client.get(f"/api/v1/profiles/{profile_id}/export?platform=android", headers=admin)
    assert android.status_code == 200
    [network] = json.loads(android.data)["openNetworkConfiguration"]["NetworkConfigurations"]
    assert network["WiFi"]["Passphrase"] == PSK
    with factory() as s:
        events = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "profile.exported").order_by(AuditEvent.id)
        ).all()
        assert [(e.details["platform"], e.details["with_secrets"]) for e in events] == [
            ("apple", True),
            ("android", True),
        ]
    hits, _ = scan_database(factory.kw["bind"], {"psk": PSK})
    assert hits == []


def test_a_hand_made_install_carrying_a_password_is_refused(app: Any, device_ca: Any, factory: Any) -> None:
    """The generic command door would store a hand-made profile's password with the command."""
    client = app.test_client()
    _managed, device_id, _unit = _enrolled_ipad(app, device_ca, factory)
    with factory() as s:
        admin = bearer(make_token(s, "admin"))
        before = len(s.scalars(select(Command)).all())
    document = {
        "PayloadType": "Configuration",
        "PayloadIdentifier": "jp.example.fd.handmade",
        "PayloadUUID": "0F6C1E0A-9A53-4E8C-9E52-000000000001",
        "PayloadVersion": 1,
        "PayloadContent": [
            {
                "PayloadType": "com.apple.wifi.managed",
                "PayloadIdentifier": "jp.example.fd.handmade.wifi",
                "PayloadUUID": "0F6C1E0A-9A53-4E8C-9E52-000000000002",
                "PayloadVersion": 1,
                "SSID_STR": "FD-GUEST",
                "EncryptionType": "WPA2",
                "Password": PSK,
            }
        ],
    }
    body = {
        "request_type": "InstallProfile",
        "params": {"Payload": base64.b64encode(plistlib.dumps(document)).decode()},
    }
    refused = client.post(f"/api/v1/devices/{device_id}/commands", headers=admin, json=body)
    assert refused.status_code == 400, refused.get_json()
    error = refused.get_json()["error"]
    assert "com.apple.wifi.managed Password" in error["fields"]["params"]["Payload"][0]
    assert PSK not in refused.get_data(as_text=True)
    del document["PayloadContent"][0]["Password"]
    body["params"]["Payload"] = base64.b64encode(plistlib.dumps(document)).decode()
    assert client.post(f"/api/v1/devices/{device_id}/commands", headers=admin, json=body).status_code == 201
    with factory() as s:
        assert len(s.scalars(select(Command)).all()) == before + 1
