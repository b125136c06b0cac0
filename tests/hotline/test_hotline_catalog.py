"""The hotline commands conform to Apple's command schemas (mdm/commands/*.yaml): every key we
emit exists there with the right type, and the supervision requirement matches."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from commands.catalog import CommandParamsError, DeliveryContext, get_command_type
from commands.queue import enqueue_command
from mdm.ground.audit import Actor
from mdm.ground.models import AuditEvent, Command, Device
from mdm.ground.secretbox import seal, unseal
from tests.support.apple_schema import schema_missing
from tests.support.factories import make_device

ADMIN = Actor("admin@hq", "admin")
COMMANDS_DIR = Path(__file__).resolve().parents[3] / "shared" / "apple-device-management" / "mdm" / "commands"

_TYPES = {
    "<string>": lambda v: isinstance(v, str),
    "<integer>": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "<boolean>": lambda v: isinstance(v, bool),
    "<real>": lambda v: isinstance(v, float),
    "<date>": lambda v: isinstance(v, datetime),
    "<data>": lambda v: isinstance(v, bytes),
    "<array>": lambda v: isinstance(v, list),
    "<dictionary>": lambda v: isinstance(v, dict),
}

# Every parameter each command accepts, filled in, so every key it can emit is checked.
FULL_PARAMS: dict[str, dict[str, Any]] = {
    "EnableLostMode": {"Message": "紛失端末です", "PhoneNumber": "03-1234-5678", "Footnote": "消防本部"},
    "DisableLostMode": {},
    "DeviceLocation": {},
    "PlayLostModeSound": {},
    "ClearPasscode": {},
    "ShutDownDevice": {},
    "DeviceLock": {"Message": "紛失端末です", "PhoneNumber": "03-1234-5678"},
    "EraseDevice": {"PreserveDataPlan": True, "DisallowProximitySetup": True},
    "RestartDevice": {"NotifyUser": True},
}


def _schemas() -> dict[str, dict[str, Any]]:
    if not COMMANDS_DIR.is_dir():
        schema_missing(f"Apple schema folder missing: {COMMANDS_DIR}")
    found = {}
    for path in COMMANDS_DIR.glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        request_type = (doc.get("payload") or {}).get("requesttype")
        if request_type:
            found[request_type] = doc
    return found


def _problems(keys: dict[str, Any], spec: list[dict[str, Any]]) -> list[str]:
    by_key = {k["key"]: k for k in spec or []}
    problems = []
    for key, value in keys.items():
        if key not in by_key:
            problems.append(f"{key}: not in Apple's schema")
        elif not _TYPES[by_key[key]["type"]](value):
            problems.append(f"{key}: {type(value).__name__} is not {by_key[key]['type']}")
    for key, item in by_key.items():
        if item.get("presence") == "required" and key not in keys:
            problems.append(f"{key}: required by Apple's schema, not sent")
    return problems


@pytest.mark.parametrize("request_type", sorted(FULL_PARAMS))
def test_emitted_keys_exist_in_apples_schema_with_their_types(request_type: str) -> None:
    schema = _schemas()[request_type]
    kind = get_command_type(request_type)
    device = Device(udid="U1", unlock_token_encrypted=seal("k", "unlock-token", b"\x01" * 48))
    keys = kind.apple_command(kind.validate(FULL_PARAMS[request_type]), DeliveryContext(device, "k"))
    assert _problems(keys, schema.get("payloadkeys") or []) == []
    ios = schema["payload"]["supportedOS"]["iOS"]
    assert kind.requires_supervision == bool(ios.get("supervised")), request_type


def test_the_schema_walker_catches_wrong_keys_and_types() -> None:
    spec = _schemas()["EnableLostMode"]["payloadkeys"]
    assert _problems({"Message": 5, "Nope": "x"}, spec) == [
        "Message: int is not <string>",
        "Nope: not in Apple's schema",
    ]


def test_lost_mode_never_expires_and_jumps_the_queue() -> None:
    kind = get_command_type("EnableLostMode")
    assert kind.expires_after is None
    assert kind.priority >= get_command_type("DeviceLock").priority


def test_lost_mode_needs_a_message_or_a_phone_number() -> None:
    with pytest.raises(CommandParamsError) as err:
        get_command_type("EnableLostMode").validate({"Footnote": "x"})
    assert "Message" in err.value.fields
    with pytest.raises(CommandParamsError) as err:
        get_command_type("ShutDownDevice").validate({"Force": True})
    assert "Force" in err.value.fields


def test_unlock_token_is_added_only_at_delivery(session, settings) -> None:
    token = b"\x07" * 48
    device = make_device(session)
    device.unlock_token_encrypted = seal(settings.secret_key, "unlock-token", token)
    command = enqueue_command(session, device, "ClearPasscode", {}, actor=ADMIN, push=False)
    session.commit()
    stored = session.scalars(select(Command).where(Command.id == command.id)).one()
    assert stored.params == {}
    audit_text = json.dumps([e.details for e in session.scalars(select(AuditEvent))])
    assert token.hex() not in audit_text and "UnlockToken" not in audit_text
    keys = get_command_type("ClearPasscode").apple_command(
        dict(stored.params), DeliveryContext(device, settings.secret_key)
    )
    assert keys == {"UnlockToken": token}
    assert unseal(settings.secret_key, "unlock-token", device.unlock_token_encrypted) == token
