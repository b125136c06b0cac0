"""A lock is shown as what the device answered (issue 14, item 1).

A simulated iPad speaks the MDM protocol over HTTP. The hotline opens an incident and locks over
the REST API; the device answers DeviceLock with each MessageResult Apple defines
(mdm/commands/device.lock.yaml, read here). The incident, the timeline, the API (incident, device,
command) and the console pages must say "sent", "acknowledged and displayed" or "acknowledged but
not displayed (no passcode)", with what to do next; NoPasscodeSet never makes the incident locked.
"""

from __future__ import annotations

import plistlib
import re
from typing import Any

import pytest
import yaml
from markupsafe import escape
from sqlalchemy import select

from mdm.ground.models import Command, CommandStatus, Device
from tests.protocol.test_apple_loop import _enroll, _skip_first_inventory
from tests.support.apple_schema import schema_dir_or_skip
from tests.web.helpers import bearer, login, make_token, make_user

REPORT = {"caller_name": "山田 太郎", "caller_unit": "救急3隊", "callback_number": "090-1234-5678"}


def _message_results() -> list[str]:
    """The MessageResult values of Apple's DeviceLock response, from the schema file."""
    path = schema_dir_or_skip().parent / "commands" / "device.lock.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    [spec] = [k for k in doc["responsekeys"] if k["key"] == "MessageResult"]
    assert spec["type"] == "<string>"
    return re.findall(r"\* '(\w+)'", spec["content"])


def test_the_schema_defines_the_four_results() -> None:
    assert _message_results() == ["Success", "DeviceInLostMode", "NoPasscodeSet", "Unknown"]


def _fetch(client: Any, ipad: Any, body: bytes) -> dict | None:
    data = ipad.connect(client, body).data
    return plistlib.loads(data) if data else None


def _locked_over_api(client: Any, session: Any, ipad: Any, token: dict) -> tuple[int, int, str]:
    _enroll(client, ipad)
    _skip_first_inventory(session)
    device = session.scalars(select(Device).where(Device.udid == ipad.udid)).one()
    assert device.is_supervised is None  # never reported: the hotline must not pick lost mode
    opened = client.post("/api/v1/incidents", headers=token, json={"device_id": device.id, **REPORT})
    assert opened.status_code == 201, opened.get_json()
    incident_id = opened.get_json()["id"]
    locked = client.post(f"/api/v1/incidents/{incident_id}/lock", headers=token, json={})
    assert locked.status_code == 200, locked.get_json()
    body = locked.get_json()
    assert body["command"]["request_type"] == "DeviceLock"
    assert "報告がない" in body["notice_ja"] and "never reported" in body["notice_en"]
    assert body["incident"]["lock"]["state"] == "sent"
    assert body["incident"]["lock"]["label_en"] == "Sent, not yet acknowledged"
    return device.id, incident_id, body["command"]["uuid"]


@pytest.mark.parametrize(
    ("message_result", "state", "incident_status", "step", "label_en"),
    [
        ("Success", "displayed", "locked", "lock_confirmed", "Acknowledged and displayed"),
        (
            "NoPasscodeSet",
            "not_displayed_no_passcode",
            "open",
            "lock_not_displayed",
            "Acknowledged but not displayed (no passcode)",
        ),
        ("DeviceInLostMode", "in_lost_mode", "locked", "lock_confirmed", None),
        ("Unknown", "display_unknown", "open", "lock_not_displayed", None),
    ],
)
def test_device_lock_result_decides_the_lock_state(
    app, client, ipad, session, settings, message_result, state, incident_status, step, label_en
):
    assert message_result in _message_results()
    with app.extensions["hikeshi"].session_factory() as s:
        token = bearer(make_token(s, "operator"))
    device_id, incident_id, lock_uuid = _locked_over_api(client, session, ipad, token)

    # The device fetches the lock first (it jumps the DeviceInformation asked for supervision).
    command = _fetch(client, ipad, ipad.idle_body())
    assert command["CommandUUID"] == lock_uuid and command["Command"]["RequestType"] == "DeviceLock"
    while_sent = client.get(f"/api/v1/incidents/{incident_id}", headers=token).get_json()
    assert while_sent["lock"]["state"] == "sent" and while_sent["status"] == "open"

    # Apple's answer: Status Acknowledged with the MessageResult response key.
    ipad.connect(client, ipad.result_body(lock_uuid, "Acknowledged", MessageResult=message_result))

    session.rollback()
    stored = session.scalars(select(Command).where(Command.uuid == lock_uuid)).one()
    assert stored.status == CommandStatus.ACKNOWLEDGED and stored.message_result == message_result
    # Queryable, not only inside the raw plist.
    assert session.scalars(select(Command.uuid).where(Command.message_result == message_result)).all() == [
        lock_uuid
    ]

    incident = client.get(f"/api/v1/incidents/{incident_id}", headers=token).get_json()
    assert incident["status"] == incident_status
    assert incident["lock"]["state"] == state and incident["lock"]["message_result"] == message_result
    assert incident["lock"]["next_step_ja"] and incident["lock"]["next_step_en"]
    if label_en:
        assert incident["lock"]["label_en"] == label_en
    steps = [e for e in incident["timeline"] if e["kind"] == "step"]
    assert steps[-1]["action"] == step and steps[-1]["details"]["message_result"] == message_result
    assert ("lock_confirmed" in [e["action"] for e in steps]) is (incident_status == "locked")
    assert steps[-1]["flagged"] is (incident_status == "open")
    if incident_status == "open":
        assert incident["locked_at"] is None

    device = client.get(f"/api/v1/devices/{device_id}", headers=token).get_json()
    assert device["lock"]["state"] == state and device["lock"]["command_uuid"] == lock_uuid
    assert device["supervised"] is None
    shown = client.get(f"/api/v1/commands/{lock_uuid}", headers=token).get_json()
    assert shown["message_result"] == message_result

    # The console, Japanese first.
    with app.extensions["hikeshi"].session_factory() as s:
        account = make_user(s, settings, "op-console", "operator")
    console = app.test_client()
    login(console, account)
    page = console.get(f"/console/hotline/incidents/{incident_id}").get_data(as_text=True)
    assert str(escape(incident["lock"]["label_ja"])) in page
    assert str(escape(incident["lock"]["next_step_ja"])) in page
    live = console.get(f"/console/hotline/incidents/{incident_id}/live.json").get_json()
    assert live["lock"]["state"] == state and live["lock"]["label"] == incident["lock"]["label_ja"]
    device_page = console.get(f"/console/devices/{device_id}").get_data(as_text=True)
    assert f'data-state="{state}"' in device_page and incident["lock"]["label_ja"] in device_page
    assert 'data-value="unknown"' in device_page and "不明(端末から未報告)" in device_page
    console.set_cookie("hikeshi_lang", "en")
    english = console.get(f"/console/hotline/incidents/{incident_id}").get_data(as_text=True)
    assert str(escape(incident["lock"]["label_en"])) in english
    assert str(escape(incident["lock"]["next_step_en"])) in english
    if step == "lock_not_displayed":
        assert "Lock acknowledged but its message was NOT displayed" in english


def test_no_passcode_keeps_the_wipe_open_and_a_second_lock_can_confirm(app, client, ipad, session):
    """NoPasscodeSet leaves the incident open: the operator can request a wipe, and a later lock
    that the device displays (after a passcode was set) makes it locked."""
    with app.extensions["hikeshi"].session_factory() as s:
        token = bearer(make_token(s, "operator"))
    _device_id, incident_id, lock_uuid = _locked_over_api(client, session, ipad, token)
    _fetch(client, ipad, ipad.idle_body())
    ipad.connect(client, ipad.result_body(lock_uuid, "Acknowledged", MessageResult="NoPasscodeSet"))
    again = client.post(f"/api/v1/incidents/{incident_id}/lock", headers=token, json={})
    assert again.status_code == 200
    second = again.get_json()["command"]["uuid"]
    assert second != lock_uuid and again.get_json()["incident"]["lock"]["state"] == "sent"
    assert _fetch(client, ipad, ipad.idle_body())["CommandUUID"] == second
    ipad.connect(client, ipad.result_body(second, "Acknowledged", MessageResult="Success"))
    incident = client.get(f"/api/v1/incidents/{incident_id}", headers=token).get_json()
    assert incident["status"] == "locked" and incident["lock"]["state"] == "displayed"
    assert incident["locked_at"] is not None


def test_lost_mode_acknowledged_is_displayed_and_supervision_comes_from_the_device(
    app, client, ipad, session
):
    """After the DeviceInformation the hotline asked for reports IsSupervised, the next lock is
    lost mode; its acknowledgement is "displayed (lost mode)"."""
    with app.extensions["hikeshi"].session_factory() as s:
        token = bearer(make_token(s, "operator"))
    device_id, incident_id, lock_uuid = _locked_over_api(client, session, ipad, token)
    _fetch(client, ipad, ipad.idle_body())
    ipad.connect(client, ipad.result_body(lock_uuid, "Acknowledged", MessageResult="Success"))
    info = _fetch(client, ipad, ipad.idle_body())
    assert info["Command"]["RequestType"] == "DeviceInformation"
    assert "IsSupervised" in info["Command"]["Queries"]
    ipad.connect(client, ipad.result_body(info["CommandUUID"], QueryResponses=ipad.device_information()))
    assert client.get(f"/api/v1/devices/{device_id}", headers=token).get_json()["supervised"] is True

    locked = client.post(f"/api/v1/incidents/{incident_id}/lock", headers=token, json={})
    body = locked.get_json()
    assert body["command"]["request_type"] == "EnableLostMode" and body["incident"]["lock"]["state"] == "sent"
    lost = _fetch(client, ipad, ipad.idle_body())
    ipad.connect(client, ipad.result_body(lost["CommandUUID"], "Acknowledged"))
    incident = client.get(f"/api/v1/incidents/{incident_id}", headers=token).get_json()
    assert incident["lock"]["state"] == "lost_mode_on" and incident["status"] == "locked"
    assert incident["lock"]["label_en"] == "Acknowledged and displayed (lost mode)"
