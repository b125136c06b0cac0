"""Answers to commands Hikeshi never queued (issue 14, item 11): a tablet that moved over from
another MDM answers that MDM's InstallApplication, ManagedApplicationList or AvailableOSUpdates.
Each answer, built from Apple's response schema, is kept exactly as received, audited, and shown
in the device's history (API and console); nothing pretends Hikeshi sent the command."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from mdm.ground.models import AuditEvent, Command, Device, ForeignCommandResult
from tests.protocol.test_apple_loop import _enroll, _skip_first_inventory, fresh
from tests.support.apple_schema import schema_dir_or_skip
from tests.web.helpers import bearer, login, make_token, make_user

SCHEMA_FILES = {
    "InstallApplication": "application.install.yaml",
    "ManagedApplicationList": "application.managed.list.yaml",
    "AvailableOSUpdates": "system.update.available.yaml",
}


def _sample(spec: dict[str, Any]) -> Any:
    """A value of the schema's type; dictionaries and arrays filled from their subkeys."""
    kind = spec.get("type")
    if kind == "<string>":
        return (spec.get("rangelist") or ["sample"])[0]
    if kind == "<integer>":
        return 1
    if kind == "<boolean>":
        return True
    if kind == "<real>":
        return 1.5
    if kind == "<array>":
        return [_sample(sub) for sub in (spec.get("subkeys") or [])[:1]]
    if kind == "<dictionary>":
        out = {}
        for sub in spec.get("subkeys") or []:
            name = "jp.example.fire.app" if sub["key"].startswith("ANY") else sub["key"]
            out[name] = _sample(sub)
        return out
    return "sample"


def _answer(request_type: str) -> dict[str, Any]:
    path = schema_dir_or_skip().parent / "commands" / SCHEMA_FILES[request_type]
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert doc["payload"]["requesttype"] == request_type
    return {spec["key"]: _sample(spec) for spec in doc.get("responsekeys") or []}


@pytest.mark.parametrize("request_type", sorted(SCHEMA_FILES))
def test_an_answer_to_another_mdms_command_is_kept_and_shown(
    app, client, ipad, session, settings, request_type
):
    _enroll(client, ipad)
    _skip_first_inventory(session)
    device = session.scalars(select(Device).where(Device.udid == ipad.udid)).one()
    commands_before = session.scalar(select(func.count(Command.id)))
    answer = _answer(request_type)
    command_uuid = str(uuid.uuid4()).upper()
    body = ipad.result_body(command_uuid, "Acknowledged", **answer)
    assert ipad.connect(client, body).status_code == 200
    # The same answer again (a retried connection) is not stored twice.
    assert ipad.connect(client, body).status_code == 200

    fresh(session)
    [kept] = session.scalars(select(ForeignCommandResult)).all()
    assert kept.device_id == device.id and kept.command_uuid == command_uuid
    assert kept.raw == body and kept.status == "Acknowledged"
    assert kept.answer_keys == sorted(answer)
    assert session.scalar(select(func.count(Command.id))) == commands_before  # no invented command
    [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "command.foreign_result")).all()
    assert event.target_id == command_uuid and event.details["answer_keys"] == sorted(answer)

    with app.extensions["hikeshi"].session_factory() as s:
        token = bearer(make_token(s, "admin"))
        account = make_user(s, settings, "auditor-console", "admin")
    listed = client.get(f"/api/v1/devices/{device.id}/foreign-results", headers=token).get_json()
    assert listed["total"] == 1
    [item] = listed["items"]
    assert item["command_uuid"] == command_uuid and item["answer_keys"] == sorted(answer)
    console = app.test_client()
    login(console, account)
    page = console.get(f"/console/devices/{device.id}").get_data(as_text=True)
    assert "Hikeshi以外が送ったコマンドへの応答" in page and command_uuid in page
    assert ", ".join(sorted(answer)) in page


def test_an_error_answer_is_kept_and_scoped_to_its_device(app, client, ipad, device_ca, session):
    from tests.support.apple_device import SimulatedIPad

    _enroll(client, ipad)
    cert, key = device_ca.issue_identity("ipad-other")
    other = SimulatedIPad(cert, key)
    _enroll(client, other)
    command_uuid = str(uuid.uuid4()).upper()
    assert ipad.connect(client, ipad.result_body(command_uuid, "Error")).status_code == 200
    fresh(session)
    [kept] = session.scalars(select(ForeignCommandResult)).all()
    assert kept.status == "Error" and kept.answer_keys == ["ErrorChain"]
    with app.extensions["hikeshi"].session_factory() as s:
        token = bearer(make_token(s, "admin"))
    other_id = session.scalars(select(Device.id).where(Device.udid == other.udid)).one()
    assert client.get(f"/api/v1/devices/{other_id}/foreign-results", headers=token).get_json()["total"] == 0
