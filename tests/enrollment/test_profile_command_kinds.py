"""InstallProfile and RemoveProfile in the command catalog."""

from __future__ import annotations

import base64
import plistlib

import pytest
from sqlalchemy.orm import Session

from commands.catalog import CommandParamsError, Priority, get_command_type
from commands.queue import enqueue_command
from mdm.doors.apple.plist_codec import encode_command
from tests.enrollment.conftest import ADMIN
from tests.support.factories import make_device


def test_install_profile_takes_bytes_or_base64_and_sends_data(session: Session) -> None:
    kind = get_command_type("InstallProfile")
    profile = b"\x30\x82signed profile bytes"
    from_bytes = kind.validate({"Payload": profile})
    assert from_bytes == {"Payload": base64.b64encode(profile).decode()}  # JSON-safe when stored
    assert kind.validate({"Payload": base64.b64encode(profile).decode()}) == from_bytes
    assert kind.to_apple(from_bytes) == {"Payload": profile}
    assert kind.priority == Priority.HIGH

    device = make_device(session)
    command = enqueue_command(
        session, device, "InstallProfile", {"Payload": profile}, actor=ADMIN, push=False
    )
    session.commit()
    wire = plistlib.loads(
        encode_command(command.uuid, command.request_type, kind.to_apple(dict(command.params)))
    )
    assert wire["Command"] == {"RequestType": "InstallProfile", "Payload": profile}


@pytest.mark.parametrize("payload", [None, "", "not base64!", b"", 42, b"x" * (512 * 1024 + 1)])
def test_install_profile_refuses_bad_payloads(payload: object) -> None:
    params = {} if payload is None else {"Payload": payload}
    with pytest.raises(CommandParamsError) as caught:
        get_command_type("InstallProfile").validate(params)
    assert "Payload" in caught.value.fields


def test_remove_profile_identifier() -> None:
    kind = get_command_type("RemoveProfile")
    assert kind.validate({"Identifier": "jp.hikeshi.profile.camera"}) == {
        "Identifier": "jp.hikeshi.profile.camera"
    }
    for bad in ("", "nodots", "has space.x", "x" * 300):
        with pytest.raises(CommandParamsError) as caught:
            kind.validate({"Identifier": bad})
        assert "Identifier" in caught.value.fields
