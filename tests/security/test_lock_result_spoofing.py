"""The attacker holds one enrolled tablet. It must not be able to confirm another tablet's lock,
write into another tablet's history, or bloat the lock state with its own strings."""

from __future__ import annotations

import plistlib

from sqlalchemy import select

from mdm.ground.models import Command, Device, ForeignCommandResult
from tests.protocol.test_apple_loop import _enroll, _skip_first_inventory, fresh
from tests.support.apple_device import SimulatedIPad
from tests.web.helpers import bearer, make_token


def test_a_tablet_cannot_confirm_another_tablets_lock(app, client, ipad, device_ca, session):
    cert, key = device_ca.issue_identity("ipad-attacker")
    attacker = SimulatedIPad(cert, key)
    _enroll(client, ipad)
    _enroll(client, attacker)
    _skip_first_inventory(session)
    victim_id = session.scalars(select(Device.id).where(Device.udid == ipad.udid)).one()
    with app.extensions["hikeshi"].session_factory() as s:
        token = bearer(make_token(s, "operator"))
    opened = client.post(
        "/api/v1/incidents", headers=token, json={"device_id": victim_id, "caller_name": "山田"}
    )
    incident_id = opened.get_json()["id"]
    lock = client.post(f"/api/v1/incidents/{incident_id}/lock", headers=token, json={}).get_json()
    lock_uuid = lock["command"]["uuid"]

    # The attacker answers the victim's lock (the UUID leaked, say from a screenshot): "Success".
    forged = attacker.result_body(lock_uuid, "Acknowledged", MessageResult="Success")
    assert attacker.connect(client, forged).status_code == 200
    incident = client.get(f"/api/v1/incidents/{incident_id}", headers=token).get_json()
    assert incident["status"] == "open" and incident["lock"]["state"] == "sent"
    fresh(session)
    victim_lock = session.scalars(select(Command).where(Command.uuid == lock_uuid)).one()
    assert victim_lock.message_result is None and victim_lock.acknowledged_at is None
    # What it sent is kept, but as the attacker's own answer, never in the victim's history.
    [kept] = session.scalars(select(ForeignCommandResult)).all()
    attacker_id = session.scalars(select(Device.id).where(Device.udid == attacker.udid)).one()
    assert kept.device_id == attacker_id and kept.command_uuid == lock_uuid
    assert client.get(f"/api/v1/devices/{victim_id}/foreign-results", headers=token).get_json()["total"] == 0


def test_an_oversized_message_result_is_cut_to_its_column(app, client, ipad, session):
    _enroll(client, ipad)
    _skip_first_inventory(session)
    device_id = session.scalars(select(Device.id).where(Device.udid == ipad.udid)).one()
    with app.extensions["hikeshi"].session_factory() as s:
        token = bearer(make_token(s, "admin"))
    sent = client.post(
        f"/api/v1/devices/{device_id}/commands",
        headers=token,
        json={"request_type": "DeviceLock", "params": {"Message": "紛失"}},
    ).get_json()
    fetched = plistlib.loads(ipad.connect(client, ipad.idle_body()).data)
    assert fetched["CommandUUID"] == sent["uuid"]
    answer = ipad.result_body(sent["uuid"], "Acknowledged", MessageResult="NoPasscodeSet" * 50)
    assert ipad.connect(client, answer).status_code == 200
    shown = client.get(f"/api/v1/devices/{device_id}", headers=token).get_json()["lock"]
    # Not a value Apple defines: neither displayed nor "no passcode", just unknown.
    assert shown["state"] == "display_unknown" and len(shown["message_result"]) == 32
