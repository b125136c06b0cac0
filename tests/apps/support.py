"""Shared steps of the app tests: a unit, an enrolled iPad in it, device answers over the real
Apple protocol, answers shaped by Apple's schema (with keys Apple has not defined)."""

from __future__ import annotations

import plistlib
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from commands.queue import enqueue_command
from mdm.ground.db import transaction
from mdm.ground.models import Device, OrgUnit
from mdm.services import orgunits
from tests.inventory.helpers import ADMIN
from tests.inventory.schema_samples import COMMANDS_DIR, response_keys
from tests.support.apple_device import SimulatedIPad
from tests.support.apple_schema import _Walker, schema_dir_or_skip


def make_unit(app: Any, code: str, *, parent: int | None = None, kind: str = "station") -> int:
    with transaction(app.extensions["hikeshi"].session_factory) as s:
        if parent is None and kind != "hq":
            hq = {"kind": "hq", "name_ja": f"{code}消防本部", "code": f"{code}-HQ"}
            parent = orgunits.create_unit(s, hq, actor=ADMIN).id
        data = {"kind": kind, "name_ja": f"{code}消防署", "code": code, "parent_id": parent}
        return orgunits.create_unit(s, data, actor=ADMIN).id


def enroll_into(app: Any, device_ca: Any, name: str, unit_id: int) -> tuple[SimulatedIPad, int]:
    cert, key = device_ca.issue_identity(name)
    ipad = SimulatedIPad(cert, key)
    client = app.test_client()
    assert ipad.checkin(client, ipad.authenticate_body()).status_code == 200
    assert ipad.checkin(client, ipad.token_update_body()).status_code == 200
    drain(app, ipad)
    with transaction(app.extensions["hikeshi"].session_factory) as s:
        device = s.scalars(select(Device).where(Device.udid == ipad.udid)).one()
        device.serial_number = ipad.serial
        orgunits.assign_device(s, device, s.get(OrgUnit, unit_id), actor=ADMIN)
        device_id = device.id
    return ipad, device_id


def drain(app: Any, ipad: SimulatedIPad) -> list[str]:
    """Answer everything waiting with a bare acknowledgement; the request types seen."""
    client = app.test_client()
    seen = []
    response = ipad.connect(client, ipad.idle_body())
    while response.status_code == 200 and response.data:
        message = plistlib.loads(response.data)
        seen.append(message["Command"]["RequestType"])
        response = ipad.connect(client, ipad.result_body(message["CommandUUID"]))
    return seen


def next_command(app: Any, ipad: SimulatedIPad) -> dict[str, Any] | None:
    response = ipad.connect(app.test_client(), ipad.idle_body())
    if response.status_code != 200 or not response.data:
        return None
    return plistlib.loads(response.data)


def answer(app: Any, ipad: SimulatedIPad, uuid: str, status: str = "Acknowledged", **keys: Any) -> Any:
    response = ipad.connect(app.test_client(), ipad.result_body(uuid, status, **keys))
    assert response.status_code == 200
    return response


def queue(app: Any, device_id: int, kind: str, params: dict[str, Any] | None = None) -> str:
    with transaction(app.extensions["hikeshi"].session_factory) as s:
        return enqueue_command(s, s.get(Device, device_id), kind, params, actor=ADMIN, push=False).uuid


@cache
def command_schema(name: str) -> dict[str, Any]:
    schema_dir_or_skip()
    return yaml.safe_load((Path(COMMANDS_DIR) / f"{name}.yaml").read_text())


def command_problems(name: str, command: dict[str, Any]) -> list[str]:
    """What in a command dictionary as the device received it Apple's schema does not allow."""
    doc = command_schema(name)
    keys = [
        *(doc.get("payloadkeys") or []),
        {"key": "RequestType", "type": "<string>", "presence": "required"},
    ]
    walker = _Walker("iOS")
    walker.check_dict(command, keys, doc["payload"]["requesttype"])
    return walker.problems


def managed_list_entry(status: str, **overrides: Any) -> dict[str, Any]:
    """One app of a ManagedApplicationList answer with every key Apple's schema lists, by type,
    plus one Apple has not defined."""
    [apps] = [k for k in response_keys("application.managed.list") if k["key"] == "ManagedApplicationList"]
    [entry] = apps["subkeys"]
    filled: dict[str, Any] = {}
    for spec in entry["subkeys"]:
        filled[spec["key"]] = {"<string>": "", "<integer>": 1, "<boolean>": False}.get(spec["type"], "")
    filled.update({"Status": status, "ManagementFlags": 1, "SomeKeyAppleAddsNextYear": {"x": [1]}})
    filled.update(overrides)
    return filled


def managed_list_problems(answer: dict[str, Any]) -> list[str]:
    """Each app of the answer checked against the schema's item keys (keys Apple has not defined
    excepted: devices add them)."""
    [apps] = [k for k in response_keys("application.managed.list") if k["key"] == "ManagedApplicationList"]
    [entry] = apps["subkeys"]
    walker = _Walker(None)
    for identifier, item in answer.items():
        if isinstance(item, dict):
            walker.check_dict(item, entry["subkeys"], identifier)
    return [p for p in walker.problems if "unknown key" not in p]
