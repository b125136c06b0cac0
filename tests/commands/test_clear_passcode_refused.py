"""ClearPasscode needs the device's UnlockToken (Apple's passcode.clear.yaml: UnlockToken is
required). A device that never sent one in its TokenUpdate is refused at queue time, with a reason
the operator understands in Japanese and English, on the API, the console and the hotline; nothing
is queued or audited as queued."""

from __future__ import annotations

import plistlib
from typing import Any

import pytest
import yaml
from sqlalchemy import select

import commands.incidents as hotline
from commands.queue import CommandRefused
from mdm.ground.audit import Actor
from mdm.ground.db import transaction
from mdm.ground.models import AuditEvent, Command, Device, Incident
from tests.protocol.test_apple_loop import _skip_first_inventory
from tests.support.apple_schema import schema_dir_or_skip
from tests.web.helpers import bearer, csrf_of, login, make_token, make_user

OPERATOR = Actor("operator-tanaka", "operator", "192.0.2.10")


def _token_update_without_unlock_token(ipad: Any) -> bytes:
    """A real-shaped TokenUpdate of a device that sends no UnlockToken (it is optional there)."""
    return plistlib.dumps(
        {
            "MessageType": "TokenUpdate",
            "UDID": ipad.udid,
            "Topic": ipad.topic,
            "Token": ipad.token,
            "PushMagic": ipad.push_magic,
            "AwaitingConfiguration": False,
        }
    )


def _enroll(client: Any, ipad: Any, session: Any, *, unlock_token: bool) -> int:
    assert ipad.checkin(client, ipad.authenticate_body()).status_code == 200
    body = ipad.token_update_body() if unlock_token else _token_update_without_unlock_token(ipad)
    assert ipad.checkin(client, body).status_code == 200
    _skip_first_inventory(session)
    device = session.scalars(select(Device).where(Device.udid == ipad.udid)).one()
    assert (device.unlock_token_encrypted is not None) is unlock_token
    return device.id


def _clear_passcodes(session: Any) -> list[Command]:
    session.rollback()
    return list(session.scalars(select(Command).where(Command.request_type == "ClearPasscode")))


def test_the_schema_requires_the_unlock_token() -> None:
    doc = yaml.safe_load((schema_dir_or_skip().parent / "commands" / "passcode.clear.yaml").read_text())
    [spec] = [k for k in doc["payloadkeys"] if k["key"] == "UnlockToken"]
    assert spec["presence"] == "required"


def test_api_refuses_with_a_reason_in_both_languages(app, client, ipad, session):
    device_id = _enroll(client, ipad, session, unlock_token=False)
    with app.extensions["hikeshi"].session_factory() as s:
        token = bearer(make_token(s, "admin"))
    answer = client.post(
        f"/api/v1/devices/{device_id}/commands", headers=token, json={"request_type": "ClearPasscode"}
    )
    assert answer.status_code == 409
    error = answer.get_json()["error"]
    assert error["code"] == "device_cannot_run"
    [reason] = error["fields"]["device"]
    assert (
        "UnlockToken" in reason
        and "パスコードを解除できません" in reason
        and "never sent an UnlockToken" in reason
    )
    assert _clear_passcodes(session) == []
    queued = session.scalars(select(AuditEvent).where(AuditEvent.action == "command.queued")).all()
    assert all(e.details.get("request_type") != "ClearPasscode" for e in queued)


def test_console_refuses_with_the_reason_on_the_device_page(app, client, ipad, session, settings):
    device_id = _enroll(client, ipad, session, unlock_token=False)
    with app.extensions["hikeshi"].session_factory() as s:
        account = make_user(s, settings, "admin-console", "admin")
    console = app.test_client()
    login(console, account)
    page = f"/console/devices/{device_id}"
    form = {"device_id": str(device_id), "request_type": "ClearPasscode", "back": page, "confirmed": "yes"}
    done = console.post(
        "/console/devices/commands", data={**form, "csrf_token": csrf_of(console.get(page).data)}
    )
    assert done.status_code == 302
    shown = console.get(page).get_data(as_text=True)
    assert "UnlockToken(パスコード解除に必要な鍵)が届いていない" in shown
    assert "never sent an UnlockToken" in shown
    assert _clear_passcodes(session) == []


def test_hotline_refuses_and_a_device_with_a_token_gets_it_on_the_wire(app, client, ipad, device_ca, session):
    factory = app.extensions["hikeshi"].session_factory
    device_id = _enroll(client, ipad, session, unlock_token=False)
    with transaction(factory) as s:
        incident = hotline.open_incident(s, s.get(Device, device_id), {"caller_name": "山田"}, actor=OPERATOR)
        incident_id = incident.id
    with transaction(factory) as s, pytest.raises(CommandRefused) as refused:
        hotline.clear_passcode(s, s.get(Incident, incident_id), actor=OPERATOR)
    assert refused.value.code == "device_cannot_run" and refused.value.field == "device"
    assert "パスコードを解除できません" in refused.value.bilingual
    assert _clear_passcodes(session) == []

    # The same tablet sends its UnlockToken later (a new TokenUpdate): now it is queued and sent.
    assert ipad.checkin(client, ipad.token_update_body()).status_code == 200
    with transaction(factory) as s:
        uuid = hotline.clear_passcode(s, s.get(Incident, incident_id), actor=OPERATOR).uuid
    fetched = plistlib.loads(ipad.connect(client, ipad.idle_body()).data)
    assert fetched["CommandUUID"] == uuid
    assert fetched["Command"] == {"RequestType": "ClearPasscode", "UnlockToken": ipad.unlock_token}
