"""Issue 14 item 9, over the real Apple protocol with answers shaped by Apple's schema:

- a DeviceInformation answer with only some keys merges into what is known, key by key, with
  when each key was reported and the history of lasting values that changed;
- a Mac app without a bundle identifier is kept, by path or by name;
- IMEI and MEID from Authenticate are stored and shown;
- a Mac's SecurityInfo gives FileVault, firewall and SIP state as facts, shown on the device
  page and in the API (and the escrowed recovery key is not copied into the facts).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from mdm.ground.models import Device, DeviceFacts, InventoryChange
from tests.inventory.schema_samples import schema_response
from tests.protocol.test_oversized_answers import drain, fetch, queue
from tests.support.apple_device import SimulatedIPad
from tests.web.helpers import bearer, login, make_token, make_user

IMEI = "35 441309 123456 7"
MEID = "35441309123456"


@pytest.fixture
def mac(app, device_ca):
    cert, key = device_ca.issue_identity("mac-1")
    device = SimulatedIPad(
        cert,
        key,
        product_name="Mac14,2",
        model_name="MacBook Air",
        model="Z15W",
        imei=IMEI,
        meid=MEID,
        os_version="15.1",
        build_version="24B83",
    )
    client = app.test_client()
    assert device.checkin(client, device.authenticate_body()).status_code == 200
    assert device.checkin(client, device.token_update_body()).status_code == 200
    drain(client, device)
    with app.extensions["hikeshi"].session_factory() as s:
        device_id = s.scalars(select(Device.id).where(Device.udid == device.udid)).one()
        token = make_token(s, "admin")
        s.commit()
    return device, device_id, bearer(token)


def _answer(app, device: SimulatedIPad, device_id: int, kind: str, **extra: Any) -> None:
    client = app.test_client()
    uuid = queue(app, device_id, kind)
    assert fetch(client, device)["CommandUUID"] == uuid
    assert device.connect(client, device.result_body(uuid, **extra)).status_code == 200
    # A device first reporting supervision gets its Activation Lock commands next (issue 20).
    drain(client, device)


def _facts(app, device_id: int) -> DeviceFacts:
    with app.extensions["hikeshi"].session_factory() as s:
        facts = s.get(DeviceFacts, device_id)
        s.expunge(facts)
        return facts


def test_imei_and_meid_from_authenticate_are_stored_and_shown(app, mac, settings):
    _device, device_id, headers = mac
    client = app.test_client()
    detail = client.get(f"/api/v1/devices/{device_id}", headers=headers).get_json()
    assert (detail["imei"], detail["meid"]) == (IMEI, MEID)
    with app.extensions["hikeshi"].session_factory() as s:
        account = make_user(s, settings, "chief", "admin")
    login(client, account)
    page = client.get(f"/console/devices/{device_id}").get_data(as_text=True)
    assert f'<dd id="device-imei">{IMEI}</dd>' in page and f'<dd id="device-meid">{MEID}</dd>' in page


def test_a_partial_device_information_merges_key_by_key_with_history(app, mac):
    device, device_id, headers = mac
    full = schema_response(
        "information.device",
        ICCID="8981100000000000001",
        AvailableDeviceCapacity=120.5,
        DeviceCapacity=256.0,
        BatteryLevel=0.9,
        OSVersion="15.1",
        IMEI=IMEI,
    )
    _answer(app, device, device_id, "DeviceInformation", **full)
    first = _facts(app, device_id)
    reported = dict(first.raw_device_information)
    assert len(reported) > 50 and reported["ICCID"] == "8981100000000000001"
    assert set(first.device_information_reported_at) == set(reported)

    partial = {"ICCID": "8981100000000000002", "AvailableDeviceCapacity": 99.0, "BatteryLevel": 0.5}
    _answer(app, device, device_id, "DeviceInformation", QueryResponses=partial)
    merged = _facts(app, device_id)
    # Nothing it did not mention was forgotten; what it did mention is new.
    assert set(merged.raw_device_information) == set(reported)
    assert merged.raw_device_information["ModelName"] == reported["ModelName"]
    assert (merged.raw_device_information["ICCID"], merged.iccid) == ("8981100000000000002",) * 2
    assert merged.available_capacity_gb == 99.0 and merged.device_capacity_gb == 256.0
    when = merged.device_information_reported_at
    later = when["ICCID"]
    assert later > first.device_information_reported_at["ICCID"]
    assert when["ModelName"] == first.device_information_reported_at["ModelName"] < later
    with app.extensions["hikeshi"].session_factory() as s:
        changes = s.scalars(
            select(InventoryChange).where(
                InventoryChange.device_id == device_id, InventoryChange.kind == "device_info_changed"
            )
        ).all()
    # A new SIM is history; free space and battery changing all day are not.
    assert [(c.subject, c.old_value, c.new_value) for c in changes] == [
        ("ICCID", "8981100000000000001", "8981100000000000002")
    ]
    api = app.test_client().get(f"/api/v1/devices/{device_id}/facts", headers=headers).get_json()
    assert api["raw_device_information"]["ModelName"] == reported["ModelName"]
    assert api["device_information_reported_at"]["ICCID"] == later
    history = app.test_client().get(f"/api/v1/devices/{device_id}/history", headers=headers).get_json()
    items = history["items"] if isinstance(history, dict) else history
    assert any(i["kind"] == "device_info_changed" and i["subject"] == "ICCID" for i in items)


def test_mac_apps_without_a_bundle_identifier_are_kept(app, mac):
    device, device_id, headers = mac
    apps = [
        schema_response("application.installed.list")["InstalledApplicationList"][0]
        | {"Identifier": "com.microsoft.Word", "Name": "Microsoft Word"},
        # No bundle identifier: an AppleScript applet and a legacy tool, as macOS lists them.
        {"Name": "出動記録エクスポート", "Version": "1.2", "ShortVersion": "1.2", "BundleSize": 81920},
        {"Name": "Legacy Tool", "Path": "/Applications/Legacy Tool.app", "BundleSize": 4096},
    ]
    _answer(app, device, device_id, "InstalledApplicationList", InstalledApplicationList=apps)
    listed = app.test_client().get(f"/api/v1/devices/{device_id}/apps", headers=headers).get_json()
    items = listed["items"] if isinstance(listed, dict) else listed
    assert sorted(a["identifier"] for a in items) == [
        "com.microsoft.Word",
        "name:出動記録エクスポート",
        "path:/Applications/Legacy Tool.app",
    ]
    [applet] = [a for a in items if a["identifier"].startswith("name:")]
    assert (applet["name"], applet["short_version"]) == ("出動記録エクスポート", "1.2")
    # Listed again without the applet: it is removed like any other app.
    _answer(app, device, device_id, "InstalledApplicationList", InstalledApplicationList=apps[:1] + apps[2:])
    listed = app.test_client().get(f"/api/v1/devices/{device_id}/apps", headers=headers).get_json()
    items = listed["items"] if isinstance(listed, dict) else listed
    assert sorted(a["identifier"] for a in items) == [
        "com.microsoft.Word",
        "path:/Applications/Legacy Tool.app",
    ]


def test_a_macs_security_info_gives_filevault_firewall_and_sip_facts(app, mac, settings):
    device, device_id, headers = mac
    info = schema_response("information.security")["SecurityInfo"]
    info.update(
        FDE_Enabled=True,
        FDE_HasPersonalRecoveryKey=False,
        FDE_HasInstitutionalRecoveryKey=True,
        FDE_PersonalRecoveryKeyCMS=b"0\x82\x01\x00secret-escrow",
        SystemIntegrityProtectionEnabled=False,
        PasscodePresent=True,
        PasscodeCompliant=True,
        PasscodeCompliantWithProfiles=True,
    )
    info["FirewallSettings"].update(FirewallEnabled=True, BlockAllIncoming=False, StealthMode=True)
    _answer(app, device, device_id, "SecurityInfo", SecurityInfo=info)
    facts = _facts(app, device_id)
    assert (
        facts.filevault_enabled,
        facts.filevault_personal_recovery_key,
        facts.filevault_institutional_recovery_key,
    ) == (
        True,
        False,
        True,
    )
    assert (facts.firewall_enabled, facts.firewall_block_all_incoming, facts.firewall_stealth_mode) == (
        True,
        False,
        True,
    )
    assert facts.sip_enabled is False
    assert "FDE_PersonalRecoveryKeyCMS" not in facts.raw_security_info
    assert facts.raw_security_info["FirewallSettings"]["StealthMode"] is True

    api = app.test_client().get(f"/api/v1/devices/{device_id}/facts", headers=headers).get_json()
    assert (api["filevault_enabled"], api["firewall_enabled"], api["sip_enabled"]) == (True, True, False)

    # An answer without the Mac keys (a partial one) leaves them as they were.
    _answer(app, device, device_id, "SecurityInfo", SecurityInfo={"PasscodePresent": True})
    again = _facts(app, device_id)
    assert (again.filevault_enabled, again.firewall_enabled, again.sip_enabled) == (True, True, False)

    client = app.test_client()
    with app.extensions["hikeshi"].session_factory() as s:
        account = make_user(s, settings, "chief", "admin")
    login(client, account)
    page = client.get(f"/console/devices/{device_id}").get_data(as_text=True)
    assert '<dd id="filevault">有効 (復旧キー預託済み)</dd>' in page
    assert '<dd id="firewall">有効 (ステルスモード)</dd>' in page
    assert '<dd id="sip"><span class="error">無効</span></dd>' in page
    assert "システム整合性保護 (SIP)" in page
