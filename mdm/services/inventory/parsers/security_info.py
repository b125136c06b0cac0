"""SecurityInfo → passcode presence and compliance, encryption capabilities, and a Mac's
FileVault, application firewall and System Integrity Protection state.

A key the answer does not carry leaves what is known of it unchanged (an iPad reports no
FileVault; a Mac with a partial answer does not lose what it said before)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.models import Command, Device
from mdm.services.inventory.events import inventory_updated
from mdm.services.inventory.facts import facts_for
from mdm.services.inventory.history import ChangeKind, record_change
from mdm.services.inventory.parsers.common import acknowledged
from mdm.services.inventory.values import boolean, integer, json_safe


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
    if "PasscodePresent" in info:
        facts.passcode_present = present
    for key, attr in _BOOLEANS:
        if key in info:
            setattr(facts, attr, boolean(info.get(key)))
    if "HardwareEncryptionCaps" in info:
        facts.hardware_encryption_caps = integer(info.get("HardwareEncryptionCaps"))
    firewall = info.get("FirewallSettings")
    if isinstance(firewall, dict):
        for key, attr in _FIREWALL:
            if key in firewall:
                setattr(facts, attr, boolean(firewall.get(key)))
    # The escrowed FileVault recovery key is a secret: it is kept only in the sealed raw answer.
    kept = {k: v for k, v in info.items() if k not in _SECRET_KEYS}
    facts.raw_security_info = {**(facts.raw_security_info or {}), **json_safe(kept)}
    facts.security_info_at = clock.now()


_BOOLEANS = (
    ("PasscodeCompliant", "passcode_compliant"),
    ("PasscodeCompliantWithProfiles", "passcode_compliant_with_profiles"),
    ("FDE_Enabled", "filevault_enabled"),
    ("FDE_HasPersonalRecoveryKey", "filevault_personal_recovery_key"),
    ("FDE_HasInstitutionalRecoveryKey", "filevault_institutional_recovery_key"),
    ("SystemIntegrityProtectionEnabled", "sip_enabled"),
)
_FIREWALL = (
    ("FirewallEnabled", "firewall_enabled"),
    ("BlockAllIncoming", "firewall_block_all_incoming"),
    ("StealthMode", "firewall_stealth_mode"),
)
_SECRET_KEYS = frozenset({"FDE_PersonalRecoveryKeyCMS", "FDE_PersonalRecoveryKeyDeviceKey"})
