"""The inventory, compliance, apps-report and alert endpoints, fed by real ingestion: a simulated
iPad enrolls through the Apple check-in, fetches its inventory commands over the command channel
and answers them; its unit's profile blocks one of its apps."""

from __future__ import annotations

import plistlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select

from commands.inventory_refresh import INVENTORY_KINDS
from mdm.ground.audit import SYSTEM
from mdm.ground.db import transaction
from mdm.ground.models import Alert, AuditEvent, Command, Device
from mdm.roots.scheduler.jobs import JobContext, webhook_delivery
from mdm.services.alerts.webhooks import create_webhook
from mdm.services.orgunits import assign_device, create_unit
from profiles.assignment import assign_profile
from profiles.service import create_profile
from profiles.spec import profile_uuid
from tests.alerts.receiver import webhook_receiver
from tests.web.helpers import bearer, make_token

BLOCKED = "com.example.fungame"
TRIAGE = "jp.fire.triage"
PROFILE_ID = "jp.fire.test.apps"
SPEC = {
    "identifier": PROFILE_ID,
    "name_ja": "アプリ制限",
    "name_en": "App rules",
    "description": "",
    "payloads": [
        {"kind": "restrictions", "settings": {"app_block_list": [{"name": "Fun Game", "bundle_id": BLOCKED}]}}
    ],
}


def app_entry(identifier: str, name: str, version: str = "1.0") -> dict[str, Any]:
    return {
        "Identifier": identifier,
        "Name": name,
        "ShortVersion": version,
        "Version": version,
        "BundleSize": 1,
    }


def answers(ipad: Any, installed: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What the iPad answers to each inventory command, as Apple's schema describes the reports."""
    info = {**ipad.device_information(), "WiFiMAC": "a4:83:e7:00:00:01", "BatteryLevel": 0.82}
    return {
        "DeviceInformation": {"QueryResponses": info},
        "SecurityInfo": {
            "SecurityInfo": {
                "PasscodePresent": True,
                "PasscodeCompliant": True,
                "PasscodeCompliantWithProfiles": True,
                "HardwareEncryptionCaps": 3,
            }
        },
        "InstalledApplicationList": {"InstalledApplicationList": installed},
        "ProfileList": {
            "ProfileList": [
                {
                    "PayloadIdentifier": PROFILE_ID,
                    "PayloadUUID": profile_uuid(PROFILE_ID, 1),  # as installed by InstallProfile
                    "PayloadDisplayName": "アプリ制限",
                    "PayloadOrganization": "Hikeshi MDM",
                    "PayloadVersion": 1,
                    "IsManaged": True,
                    "IsEncrypted": False,
                    "PayloadRemovalDisallowed": True,
                    "PayloadContent": [],
                }
            ]
        },
        "CertificateList": {
            "CertificateList": [
                {
                    "CommonName": "ipad-1",
                    "Data": ipad.identity_cert.public_bytes(Encoding.DER),
                    "IsIdentity": True,
                }
            ]
        },
    }


def drain(client: Any, ipad: Any, installed: list[dict[str, Any]]) -> list[str]:
    """The iPad fetches and answers every queued command; returns the request types seen."""
    replies = answers(ipad, installed)
    seen = []
    response = ipad.connect(client, ipad.idle_body())
    while response.data:
        command = plistlib.loads(response.data)
        kind = command["Command"]["RequestType"]
        seen.append(kind)
        response = ipad.connect(client, ipad.result_body(command["CommandUUID"], **replies.get(kind, {})))
        assert response.status_code == 200
    return seen


@dataclass
class Fleet:
    device_id: int
    unit_id: int
    receiver: Any
    factory: Any
    settings: Any


@pytest.fixture
def fleet(app: Any, client: Any, ipad: Any, tree: Any) -> Iterator[Fleet]:
    with enrolled_fleet(app, client, ipad, tree) as enrolled:
        yield enrolled


@contextmanager
def enrolled_fleet(app: Any, client: Any, ipad: Any, tree: Any) -> Iterator[Fleet]:
    """The iPad enrolled into unit A2 (station A) whose profile blocks BLOCKED, a webhook to a live
    receiver, and a first inventory answered with TRIAGE and BLOCKED installed."""
    hikeshi = app.extensions["hikeshi"]
    factory, settings = hikeshi.session_factory, hikeshi.settings
    assert ipad.checkin(client, ipad.authenticate_body()).status_code == 200
    assert ipad.checkin(client, ipad.token_update_body()).status_code == 200
    with webhook_receiver() as receiver:
        with transaction(factory) as s:
            unit = create_unit(
                s,
                {"kind": "unit", "name_ja": "中央第二救急隊", "code": "A2", "parent_id": tree.station_a.id},
                actor=SYSTEM,
            )
            device = s.scalars(select(Device).where(Device.udid == ipad.udid)).one()
            assign_device(s, device, unit, actor=SYSTEM)
            assign_profile(s, settings, create_profile(s, SYSTEM, SPEC), unit, actor=SYSTEM)
            create_webhook(
                s,
                SYSTEM,
                "dispatch-center",
                receiver.url,
                secret_key=settings.secret_key,
                allow_networks=settings.webhook_allow_networks,
            )
            ids = (device.id, unit.id)
        seen = drain(client, ipad, [app_entry(TRIAGE, "Triage"), app_entry(BLOCKED, "Fun Game")])
        assert set(INVENTORY_KINDS) <= set(seen)
        yield Fleet(ids[0], ids[1], receiver, factory, settings)


def token(fleet: Fleet, role: str, org_unit_id: int | None = None) -> dict[str, str]:
    # Written through the app's own (immediate) sessions: the dispatcher thread may be writing too.
    with fleet.factory() as s:
        return bearer(make_token(s, role, org_unit_id=org_unit_id))


@pytest.fixture
def admin(fleet: Fleet) -> dict[str, str]:
    return token(fleet, "admin")


def test_device_inventory_as_reported(client: Any, fleet: Fleet, admin: dict[str, str], ipad: Any) -> None:
    base = f"/api/v1/devices/{fleet.device_id}"
    facts = client.get(f"{base}/facts", headers=admin).get_json()
    assert facts["wifi_mac"] == "a4:83:e7:00:00:01" and facts["battery_level"] == pytest.approx(0.82)
    assert facts["passcode_present"] is True and facts["device_information_at"] is not None
    assert facts["raw_device_information"]["SerialNumber"] == ipad.serial

    apps = {a["identifier"]: a for a in client.get(f"{base}/apps", headers=admin).get_json()}
    assert set(apps) == {TRIAGE, BLOCKED}
    assert (apps[BLOCKED]["unauthorized"], apps[BLOCKED]["unauthorized_reason"]) == (True, "blocked")
    assert (apps[TRIAGE]["unauthorized"], apps[TRIAGE]["unauthorized_reason"]) == (False, None)
    assert apps[BLOCKED]["name"] == "Fun Game" and apps[BLOCKED]["short_version"] == "1.0"

    [profile] = client.get(f"{base}/installed-profiles", headers=admin).get_json()
    assert (profile["identifier"], profile["display_name"], profile["removal_disallowed"]) == (
        PROFILE_ID,
        "アプリ制限",
        True,
    )
    [cert] = client.get(f"{base}/certificates", headers=admin).get_json()
    assert "ipad-1" in cert["subject"] and cert["not_after"] and cert["is_identity"] is True

    [finding] = client.get(f"{base}/findings", headers=admin).get_json()
    assert (finding["rule"], finding["subject"], finding["open"]) == ("unauthorized_app", BLOCKED, True)
    detail = client.get(base, headers=admin).get_json()
    assert (detail["compliance"], detail["compliance_severity"], detail["open_findings"]) == (
        "noncompliant",
        "critical",
        1,
    )


def test_removing_the_app_closes_the_finding_and_shows_in_history(
    client: Any, fleet: Fleet, admin: dict[str, str], ipad: Any
) -> None:
    base = f"/api/v1/devices/{fleet.device_id}"
    refreshed = client.post(f"{base}/inventory/refresh", headers=admin)
    assert refreshed.status_code == 200
    commands = refreshed.get_json()["commands"]
    assert sorted(c["request_type"] for c in commands) == sorted(INVENTORY_KINDS)
    # Asked again before the device fetched them: the same commands, nothing piles up.
    again = client.post(f"{base}/inventory/refresh", headers=admin).get_json()["commands"]
    assert {c["uuid"] for c in again} == {c["uuid"] for c in commands}

    ipad.os_version = "18.1"
    drain(client, ipad, [app_entry(TRIAGE, "Triage", "1.1")])
    history = client.get(f"{base}/history", headers=admin).get_json()
    kinds = {(c["kind"], c["subject"]) for c in history["items"]}
    assert ("app_removed", BLOCKED) in kinds and ("app_updated", TRIAGE) in kinds
    assert any(c["kind"] == "os_upgraded" and c["new_value"] == "18.1" for c in history["items"])
    only_removed = client.get(f"{base}/history?kind=app_removed", headers=admin).get_json()
    assert [c["subject"] for c in only_removed["items"]] == [BLOCKED]

    assert client.get(f"{base}/findings?state=open", headers=admin).get_json() == []
    [closed] = client.get(f"{base}/findings?state=closed", headers=admin).get_json()
    assert closed["subject"] == BLOCKED and closed["closed_at"] is not None and closed["open"] is False
    assert client.get(base, headers=admin).get_json()["compliance"] == "compliant"


def test_devices_filter_by_compliance_and_installed_app(
    client: Any, fleet: Fleet, admin: dict[str, str], tree: Any
) -> None:
    def ids(query: str) -> list[int]:
        response = client.get(f"/api/v1/devices?{query}", headers=admin)
        assert response.status_code == 200, response.get_json()
        return [d["id"] for d in response.get_json()["items"]]

    assert ids("compliance=noncompliant") == [fleet.device_id]
    assert ids("compliance_severity=critical") == [fleet.device_id]
    # The tree's devices never reported anything: not evaluated.
    assert set(ids("compliance=unknown")) == {tree.device_a.id, tree.device_b.id, tree.device_loose.id}
    assert ids("compliance=compliant") == []
    assert ids(f"app={BLOCKED}") == [fleet.device_id]
    assert ids(f"app={BLOCKED}&compliance=compliant") == []
    assert ids("app=com.example.notinstalled") == []
    listed = client.get(f"/api/v1/devices?app={TRIAGE}", headers=admin).get_json()["items"]
    assert [(d["compliance"], d["compliance_severity"]) for d in listed] == [("noncompliant", "critical")]
    bad = client.get("/api/v1/devices?compliance=green", headers=admin)
    assert bad.status_code == 400 and "compliance" in bad.get_json()["error"]["fields"]


def test_apps_report_counts_devices_and_unauthorized(
    client: Any, fleet: Fleet, admin: dict[str, str], session: Any
) -> None:
    report = client.get("/api/v1/apps", headers=admin).get_json()
    rows = {r["identifier"]: r for r in report["items"]}
    assert rows[BLOCKED] == {
        "identifier": BLOCKED,
        "name": "Fun Game",
        "devices": 1,
        "unauthorized_devices": 1,
    }
    assert rows[TRIAGE]["unauthorized_devices"] == 0 and report["total"] == 2
    flagged = client.get("/api/v1/apps?unauthorized=true", headers=admin).get_json()
    assert [r["identifier"] for r in flagged["items"]] == [BLOCKED]
    assert [
        r["identifier"] for r in client.get("/api/v1/apps?q=triage", headers=admin).get_json()["items"]
    ] == [TRIAGE]
    # A station outside the device's branch sees no app at all.
    north = token(fleet, "auditor", _station_b(session))
    assert client.get("/api/v1/apps", headers=north).get_json() == {
        "items": [],
        "page": 1,
        "per_page": 50,
        "total": 0,
    }


def _station_b(session: Any) -> int:
    from mdm.ground.models import OrgUnit

    return session.scalars(select(OrgUnit.id).where(OrgUnit.code == "ST-B")).one()


def test_alert_list_detail_deliveries_and_acknowledge(
    client: Any, fleet: Fleet, admin: dict[str, str], session: Any
) -> None:
    assert webhook_delivery(JobContext(fleet.factory, fleet.settings, "test")) == {
        "attempted": 1,
        "delivered": 1,
    }
    listed = client.get("/api/v1/alerts?state=open", headers=admin).get_json()
    [alert] = listed["items"]
    assert alert["kind"] == "compliance.unauthorized_app" and alert["device_id"] == fleet.device_id
    assert alert["severity"] == "critical" and BLOCKED in alert["title"] and alert["state"] == "open"
    assert client.get("/api/v1/alerts?severity=warning", headers=admin).get_json()["items"] == []
    assert len(client.get(f"/api/v1/alerts?unit_id={fleet.unit_id}", headers=admin).get_json()["items"]) == 1
    assert len(client.get("/api/v1/alerts?kind=compliance.", headers=admin).get_json()["items"]) == 1

    detail = client.get(f"/api/v1/alerts/{alert['id']}", headers=admin).get_json()
    [delivery] = detail["deliveries"]
    assert (delivery["webhook_name"], delivery["status"], delivery["attempts"]) == (
        "dispatch-center",
        "delivered",
        1,
    )
    [attempt] = delivery["attempt_log"]
    assert attempt["status_code"] == 200 and attempt["error"] is None

    blank = client.post(f"/api/v1/alerts/{alert['id']}/acknowledge", headers=admin, json={"comment": "  "})
    assert blank.status_code == 400 and "comment" in blank.get_json()["error"]["fields"]
    missing = client.post(f"/api/v1/alerts/{alert['id']}/acknowledge", headers=admin, json={})
    assert missing.status_code == 400 and "comment" in missing.get_json()["error"]["fields"]
    done = client.post(
        f"/api/v1/alerts/{alert['id']}/acknowledge", headers=admin, json={"comment": "ゲームを削除させた"}
    )
    assert done.status_code == 200, done.get_json()
    body = done.get_json()
    assert body["state"] == "acknowledged" and body["acknowledge_comment"] == "ゲームを削除させた"
    assert body["acknowledged_by"].startswith("token:")
    twice = client.post(f"/api/v1/alerts/{alert['id']}/acknowledge", headers=admin, json={"comment": "again"})
    assert twice.status_code == 409
    assert client.get("/api/v1/alerts?state=open", headers=admin).get_json()["items"] == []
    session.rollback()
    session.expire_all()
    [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "alert.acknowledged")).all()
    assert event.target_id == str(alert["id"]) and "ゲームを削除させた" in str(event.details)


def test_roles_and_scope(client: Any, fleet: Fleet, session: Any, tree: Any) -> None:
    operator = token(fleet, "operator")
    auditor = token(fleet, "auditor")
    dispatch = token(fleet, "dispatch")
    inside = token(fleet, "admin", tree.station_a.id)
    outside = token(fleet, "admin", tree.station_b.id)
    [alert_id] = session.scalars(select(Alert.id)).all()
    base = f"/api/v1/devices/{fleet.device_id}"

    assert client.get("/api/v1/alerts", headers=operator).status_code == 200
    assert client.get("/api/v1/alerts", headers=auditor).status_code == 200
    assert client.get("/api/v1/alerts", headers=dispatch).status_code == 403
    for reader in (operator, auditor):
        ack = client.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=reader, json={"comment": "x"})
        assert ack.status_code == 403
    # Inventory refresh is a command: the hotline operator may not queue it.
    assert client.post(f"{base}/inventory/refresh", headers=operator).status_code == 403
    assert client.get(f"{base}/apps", headers=dispatch).status_code == 200

    assert client.get(f"{base}/apps", headers=inside).status_code == 200
    assert client.get(f"/api/v1/alerts/{alert_id}", headers=inside).status_code == 200
    for path in ("facts", "apps", "installed-profiles", "certificates", "history", "findings"):
        assert client.get(f"{base}/{path}", headers=outside).status_code == 404, path
    assert client.post(f"{base}/inventory/refresh", headers=outside).status_code == 404
    assert client.get(f"/api/v1/alerts/{alert_id}", headers=outside).status_code == 404
    assert client.get("/api/v1/alerts", headers=outside).get_json()["items"] == []
    ack = client.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=outside, json={"comment": "x"})
    assert ack.status_code == 404
    assert client.get(f"/api/v1/devices?app={BLOCKED}", headers=outside).get_json()["items"] == []
    session.rollback()
    session.expire_all()
    assert session.get(Alert, alert_id).acknowledged_at is None


def test_a_refresh_for_a_device_that_cannot_take_commands_is_a_conflict(
    client: Any, fleet: Fleet, admin: dict[str, str], tree: Any, session: Any
) -> None:
    with transaction(fleet.factory) as s:
        s.get(Device, tree.device_b.id).enrollment_state = "unenrolled"
    response = client.post(f"/api/v1/devices/{tree.device_b.id}/inventory/refresh", headers=admin)
    assert response.status_code == 409 and "device" in response.get_json()["error"]["fields"]
    session.expire_all()
    assert session.scalars(select(Command).where(Command.device_id == tree.device_b.id)).all() == []
    facts = client.get(f"/api/v1/devices/{tree.device_b.id}/facts", headers=admin).get_json()
    assert facts["device_id"] == tree.device_b.id and facts["wifi_mac"] is None
    assert client.get(f"/api/v1/devices/{tree.device_b.id}/apps", headers=admin).get_json() == []
