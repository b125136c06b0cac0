"""Answering inventory commands the way the command channel does: record_result with the
report as a device sends it (plist bytes stored raw)."""

from __future__ import annotations

import plistlib
from typing import Any

from sqlalchemy.orm import Session

from commands.queue import enqueue_command
from commands.results import record_result
from mdm.ground.audit import Actor
from mdm.ground.models import Command, Device
from mdm.roots.commands import build_command_context
from mdm.services.inventory.events import settle_inventory

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")
# What the channel passes on: the context the wiring of the tests' session factory (settings
# None) builds, with the profile services a ProfileList answer reaches.
COMMANDS = build_command_context(None)


def answer(
    session: Session,
    device: Device,
    request_type: str,
    body: dict[str, Any],
    *,
    status: str = "Acknowledged",
    params: dict[str, Any] | None = None,
) -> Command:
    command = enqueue_command(
        session, device, request_type, params, actor=ADMIN, push=False, context=COMMANDS
    )
    command.status = "sent"
    report = {"UDID": device.udid, "CommandUUID": command.uuid, "Status": status, **body}
    raw = plistlib.dumps(report)
    result = record_result(session, device, plistlib.loads(raw), raw, actor=ADMIN, context=COMMANDS)
    assert result is command
    # What the check-in's commit does first (mdm.services.inventory.events): tests read before committing.
    settle_inventory(session)
    session.flush()
    return command


def apps(*entries: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "InstalledApplicationList": [
            {
                "Identifier": ident,
                "Name": name,
                "ShortVersion": version,
                "Version": version,
                "BundleSize": 1000,
            }
            for ident, name, version in entries
        ]
    }
