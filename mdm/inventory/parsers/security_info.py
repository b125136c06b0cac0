"""SecurityInfo → passcode presence and compliance, encryption capabilities."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from commands.results import on_result
from mdm import clock
from mdm.inventory.events import inventory_updated
from mdm.inventory.facts import facts_for
from mdm.inventory.history import ChangeKind, record_change
from mdm.inventory.parsers.common import acknowledged
from mdm.inventory.values import boolean, integer, json_safe
from mdm.models import Command, Device


@on_result("SecurityInfo")
def parse_security_info(session: Session, command: Command, report: dict[str, Any]) -> None:
    if not acknowledged(command, report):
        return
    info = report.get("SecurityInfo")
    if not isinstance(info, dict):
        return
    apply_security_info(session, command.device, info)
    inventory_updated(session, command.device, "SecurityInfo")


def apply_security_info(session: Session, device: Device, info: dict[str, Any]) -> None:
    facts = facts_for(session, device.id)
    present = boolean(info.get("PasscodePresent"))
    if present is not None and facts.passcode_present is not None and present != facts.passcode_present:
        record_change(
            session,
            device.id,
            ChangeKind.PASSCODE_CHANGED,
            "PasscodePresent",
            facts.passcode_present,
            present,
        )
    facts.passcode_present = present
    facts.passcode_compliant = boolean(info.get("PasscodeCompliant"))
    facts.passcode_compliant_with_profiles = boolean(info.get("PasscodeCompliantWithProfiles"))
    facts.hardware_encryption_caps = integer(info.get("HardwareEncryptionCaps"))
    facts.raw_security_info = json_safe(info)
    facts.security_info_at = clock.now()
