"""ProfileList → the configuration profiles installed on the device."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.models import Command, Device, InstalledProfile
from mdm.services.inventory.events import inventory_updated
from mdm.services.inventory.facts import facts_for
from mdm.services.inventory.history import ChangeKind, record_change
from mdm.services.inventory.parsers.common import acknowledged
from mdm.services.inventory.values import boolean, integer, text


def parse_profile_list(session: Session, command: Command, report: dict[str, Any]) -> None:
    if not acknowledged(command, report):
        return
    items = report.get("ProfileList")
    if not isinstance(items, list):
        return
    apply_profile_list(session, command.device, items)
    inventory_updated(session, command.device, "ProfileList")


def apply_profile_list(session: Session, device: Device, items: list[Any]) -> None:
    now = clock.now()
    existing = {
        p.identifier: p
        for p in session.scalars(select(InstalledProfile).where(InstalledProfile.device_id == device.id))
    }
    first_inventory = facts_for(session, device.id).profiles_at is None
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            continue
        identifier = text(item.get("PayloadIdentifier"))
        if identifier is None or identifier in seen:
            continue
        seen.add(identifier)
        row = existing.get(identifier)
        if row is None:
            row = InstalledProfile(device_id=device.id, identifier=identifier, first_seen_at=now)
            session.add(row)
            if not first_inventory:
                record_change(session, device.id, ChangeKind.PROFILE_INSTALLED, identifier)
        row.payload_uuid = text(item.get("PayloadUUID"), 64)
        row.display_name = text(item.get("PayloadDisplayName"))
        row.organization = text(item.get("PayloadOrganization"))
        row.payload_version = integer(item.get("PayloadVersion"))
        row.is_managed = boolean(item.get("IsManaged"))
        row.is_encrypted = boolean(item.get("IsEncrypted"))
        row.removal_disallowed = boolean(item.get("PayloadRemovalDisallowed"))
        row.updated_at = now
    for identifier, row in existing.items():
        if identifier not in seen:
            record_change(session, device.id, ChangeKind.PROFILE_REMOVED, identifier)
            session.delete(row)
    facts_for(session, device.id).profiles_at = now
