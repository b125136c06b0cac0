"""Issue 14 item 5: an InstallProfile followed by an inventory refresh must not flap readiness.

A simulated iPad answers over /mdm/connect with ProfileList answers shaped by Apple's schema
(profile.list.yaml: every item key, PayloadContent, the enrollment profile beside ours). A
ProfileList answered before the device got to the install describes the device as it was: it
opens no "profile missing" finding, raises no alert and writes no readiness event. A profile the
device genuinely lost still does all three, titled in Japanese first.
"""

from __future__ import annotations

import plistlib
from typing import Any

import pytest
from sqlalchemy import func, select

from commands.inventory_refresh import queue_inventory_refresh
from mdm.ground.audit import Actor
from mdm.ground.db import transaction
from mdm.ground.models import Alert, ComplianceFinding, Device, ReadinessEvent
from mdm.services import orgunits
from profiles.assignment import assign_profile
from profiles.service import create_profile_from_template
from tests.inventory.schema_samples import response_keys
from tests.support.apple_device import SimulatedIPad
from tests.web.helpers import bearer, login, make_token, make_user

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")
IDENTIFIER = "jp.example.fd.field-standard"


def _item_keys() -> set[str]:
    [profile_list] = response_keys("profile.list")
    [item] = profile_list["subkeys"]
    return {k["key"] for k in item["subkeys"]}


class ProfileHoldingIPad:
    """A SimulatedIPad that installs what it is sent and lists it as iPadOS does."""

    def __init__(self, ipad: SimulatedIPad) -> None:
        self.ipad = ipad
        self.installed: dict[str, dict[str, Any]] = {}

    def profile_list(self) -> list[dict[str, Any]]:
        # The MDM enrollment profile is always there (Hikeshi ignores it when comparing).
        enrollment = {
            "PayloadIdentifier": "jp.hikeshi.mdm.enrollment",
            "PayloadUUID": "7A4B1C2D-0000-4000-8000-000000000001",
            "PayloadVersion": 1,
            "PayloadDisplayName": "Hikeshi MDM",
            "PayloadOrganization": "火消し消防本部",
            "PayloadDescription": "MDM",
            "PayloadRemovalDisallowed": False,
            "HasRemovalPasscode": False,
            "IsEncrypted": False,
            "IsManaged": False,
            "SignerCertificates": [],
            "Source": "User",
            "PayloadContent": [
                {
                    "PayloadType": "com.apple.mdm",
                    "PayloadVersion": 1,
                    "PayloadIdentifier": "jp.hikeshi.mdm.enrollment.mdm",
                    "PayloadUUID": "7A4B1C2D-0000-4000-8000-000000000002",
                    "PayloadDisplayName": "MDM",
                }
            ],
        }
        items = [enrollment]
        for p in self.installed.values():
            items.append(
                {
                    "PayloadIdentifier": p["PayloadIdentifier"],
                    "PayloadUUID": p["PayloadUUID"],
                    "PayloadVersion": p["PayloadVersion"],
                    "PayloadDisplayName": p.get("PayloadDisplayName", ""),
                    "PayloadOrganization": p.get("PayloadOrganization", ""),
                    "PayloadDescription": p.get("PayloadDescription", ""),
                    "PayloadRemovalDisallowed": bool(p.get("PayloadRemovalDisallowed", False)),
                    "HasRemovalPasscode": False,
                    "IsEncrypted": False,
                    "IsManaged": True,
                    "SignerCertificates": [b"0\x03\x02\x01\x01"],
                    "Source": "MDM",
                    "PayloadContent": [
                        {
                            key: payload[key]
                            for key in (
                                "PayloadType",
                                "PayloadVersion",
                                "PayloadIdentifier",
                                "PayloadUUID",
                                "PayloadDisplayName",
                            )
                            if key in payload
                        }
                        for payload in p.get("PayloadContent", [])
                    ],
                }
            )
        allowed = _item_keys()
        assert all(set(item) <= allowed for item in items), "ProfileList item keys outside Apple's schema"
        return items

    def drain(self, client: Any, response: Any = None) -> list[str]:
        """Answer every waiting command (starting from `response`, else an Idle); their kinds."""
        seen: list[str] = []
        if response is None:
            response = self.ipad.connect(client, self.ipad.idle_body())
        while response.status_code == 200 and response.data:
            message = plistlib.loads(response.data)
            command = message["Command"]
            kind = command["RequestType"]
            seen.append(kind)
            extra: dict[str, Any] = {}
            if kind == "InstallProfile":
                profile = plistlib.loads(_unsigned_content(command["Payload"]))
                self.installed[profile["PayloadIdentifier"]] = profile
            elif kind == "RemoveProfile":
                self.installed.pop(command["Identifier"], None)
            elif kind == "ProfileList":
                extra["ProfileList"] = self.profile_list()
            elif kind == "DeviceInformation":
                extra["QueryResponses"] = self.ipad.device_information()
            elif kind == "SecurityInfo":
                extra["SecurityInfo"] = {
                    "PasscodePresent": True,
                    "PasscodeCompliant": True,
                    "PasscodeCompliantWithProfiles": True,
                    "HardwareEncryptionCaps": 3,
                }
            elif kind == "InstalledApplicationList":
                extra["InstalledApplicationList"] = []
            elif kind == "CertificateList":
                extra["CertificateList"] = []
            response = self.ipad.connect(client, self.ipad.result_body(message["CommandUUID"], **extra))
        assert response.status_code == 200
        return seen


def _unsigned_content(signed: bytes) -> bytes:
    from asn1crypto import cms

    return cms.ContentInfo.load(signed)["content"]["encap_content_info"]["content"].native


@pytest.fixture
def factory(app):
    return app.extensions["hikeshi"].session_factory


@pytest.fixture
def conf(app):
    return app.extensions["hikeshi"].settings


@pytest.fixture
def placed(app, factory, device_ca):
    """An enrolled iPad that answered its first inventory, in 救急1隊 (plan: 1 working tablet)."""
    cert, key = device_ca.issue_identity("ipad-flap")
    managed = ProfileHoldingIPad(SimulatedIPad(cert, key))
    client = app.test_client()
    assert managed.ipad.checkin(client, managed.ipad.authenticate_body()).status_code == 200
    assert managed.ipad.checkin(client, managed.ipad.token_update_body()).status_code == 200
    managed.drain(client)
    with transaction(factory) as s:
        hq = orgunits.create_unit(s, {"kind": "hq", "name_ja": "消防本部", "code": "HQ"}, actor=ADMIN)
        station = orgunits.create_unit(
            s, {"kind": "station", "name_ja": "中央消防署", "code": "CEN", "parent_id": hq.id}, actor=ADMIN
        )
        unit = orgunits.create_unit(
            s,
            {
                "kind": "unit",
                "unit_type": "ambulance",
                "name_ja": "救急1隊",
                "code": "A1",
                "parent_id": station.id,
            },
            actor=ADMIN,
        )
        device = s.scalars(select(Device).where(Device.udid == managed.ipad.udid)).one()
        orgunits.assign_device(s, device, unit, actor=ADMIN)
        ids = {"station": station.id, "unit": unit.id, "device": device.id}
    managed.drain(client)
    return managed, ids


def _counts(factory, ids) -> tuple[int, int, int, str]:
    with factory() as s:
        events = s.scalar(
            select(func.count()).select_from(ReadinessEvent).where(ReadinessEvent.org_unit_id == ids["unit"])
        )
        findings = s.scalar(
            select(func.count())
            .select_from(ComplianceFinding)
            .where(
                ComplianceFinding.device_id == ids["device"],
                ComplianceFinding.rule == "profile_missing_or_outdated",
            )
        )
        alerts = s.scalar(select(func.count()).select_from(Alert).where(Alert.device_id == ids["device"]))
        last = s.scalars(
            select(ReadinessEvent.state)
            .where(ReadinessEvent.org_unit_id == ids["unit"])
            .order_by(ReadinessEvent.id.desc())
        ).first()
        return events, findings, alerts, last


def test_install_then_refresh_writes_no_finding_alert_or_readiness_event(
    app, factory, conf, placed, settings
):
    managed, ids = placed
    client = app.test_client()
    before = _counts(factory, ids)
    assert before[1:] == (0, 0, "ready")

    # The device fetched a ProfileList; while it works on it, the profile is assigned. Its answer
    # (without the profile) arrives after the install was queued, before it was delivered.
    with transaction(factory) as s:
        queue_inventory_refresh(s, s.get(Device, ids["device"]), ADMIN, ["ProfileList"], push=False)
    fetched = managed.ipad.connect(client, managed.ipad.idle_body())
    assert plistlib.loads(fetched.data)["Command"]["RequestType"] == "ProfileList"
    with transaction(factory) as s:
        profile = create_profile_from_template(s, ADMIN, "field-standard", identifier=IDENTIFIER)
        summary = assign_profile(s, conf, profile, orgunits.get_unit(s, ids["station"]), actor=ADMIN)
        assert len(summary.installs) == 1
    assert managed.drain(client, fetched) == ["ProfileList", "InstallProfile"]
    assert IDENTIFIER in managed.installed
    assert _counts(factory, ids) == before

    # The first refresh after the install: DeviceInformation is answered before the new
    # ProfileList, so the device is evaluated while the stored ProfileList predates the install.
    with transaction(factory) as s:
        queue_inventory_refresh(s, s.get(Device, ids["device"]), ADMIN, push=False)
    order = managed.drain(client)
    assert order.index("DeviceInformation") < order.index("ProfileList")
    assert _counts(factory, ids) == before

    # The API and the console agree: nothing open, the unit stayed ready.
    with factory() as s:
        token = make_token(s, "admin")
        s.commit()
    findings = client.get(f"/api/v1/devices/{ids['device']}/findings?state=all", headers=bearer(token))
    assert findings.status_code == 200 and findings.get_json() == []
    readiness = client.get("/api/v1/readiness", headers=bearer(token)).get_json()
    [unit] = [u for u in readiness["units"] if u["unit_id"] == ids["unit"]]
    assert unit["state"] == "ready"

    # Genuinely missing: the user removed it. A finding, a Japanese-first alert, and the unit drops.
    managed.installed.pop(IDENTIFIER)
    with transaction(factory) as s:
        queue_inventory_refresh(s, s.get(Device, ids["device"]), ADMIN, ["ProfileList"], push=False)
    managed.drain(client)
    events, found, alerts, last = _counts(factory, ids)
    assert (events, found, alerts, last) == (before[0] + 1, 1, 1, "critical")
    with factory() as s:
        alert = s.scalars(select(Alert).where(Alert.device_id == ids["device"])).one()
        assert alert.title.startswith("構成プロファイル未インストール: ")
        assert alert.title.endswith(" / Profile missing: " + profile_name(s))
    items = client.get(f"/api/v1/devices/{ids['device']}/findings", headers=bearer(token)).get_json()
    assert [(f["rule"], f["subject"]) for f in items] == [("profile_missing_or_outdated", IDENTIFIER)]
    with factory() as s:
        account = make_user(s, settings, "chief", "admin")
    login(client, account)
    page = client.get(f"/console/devices/{ids['device']}").get_data(as_text=True)
    assert "構成プロファイル未インストール" in page


def profile_name(s) -> str:
    from profiles.service import get_profile_by_identifier

    return get_profile_by_identifier(s, IDENTIFIER).name_ja
