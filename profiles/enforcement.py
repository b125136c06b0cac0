"""Keeping profiles in force: a ProfileList answer is compared with the device's desired set.

A desired profile that is missing, or installed at another version, is installed again; a
Hikeshi profile that is no longer desired is removed; a profile Hikeshi did not install is
recorded as foreign (DeviceProfileState with no profile) and reported in the audit trail once,
when first seen. The installed version is read from the profile's top-level PayloadUUID, which
is uuid5(identifier, version) by design (profiles.spec.profile_uuid).

Inventory keeps its own record of installed profiles (mdm.services.inventory); this handler only compares.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.context import NO_CONTEXT, CommandContext
from enrollment.profile import PROFILE_IDENTIFIER as ENROLLMENT_PROFILE_IDENTIFIER
from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import Command, CommandStatus, Device, DeviceProfileState, Profile
from profiles.assignment import reconcile_devices
from profiles.spec import profile_uuid

log = logging.getLogger(__name__)

ENFORCER = Actor("system:profile-enforcement", "system")


def installed_version(profile: Profile, payload_uuid: Any) -> int | None:
    """Which version of `profile` a PayloadUUID names; None when it is none of them."""
    if not isinstance(payload_uuid, str):
        return None
    wanted = payload_uuid.upper()
    for version in range(profile.version, 0, -1):
        if profile_uuid(profile.identifier, version) == wanted:
            return version
    return None


def compare_profile_list(
    session: Session, device: Device, items: list[dict[str, Any]], context: CommandContext = NO_CONTEXT
) -> list[str]:
    """Record what the device reports against its desired set and queue what restores it (queued
    with `context`: the CommandContext the ProfileList's result was recorded with).

    Returns the identifiers of foreign profiles first seen in this answer."""
    now = clock.now()
    reported = {
        item["PayloadIdentifier"]: item
        for item in items
        if isinstance(item, dict) and isinstance(item.get("PayloadIdentifier"), str)
    }
    reported.pop(ENROLLMENT_PROFILE_IDENTIFIER, None)
    states = {
        s.identifier: s
        for s in session.scalars(select(DeviceProfileState).where(DeviceProfileState.device_id == device.id))
    }
    known = {
        p.identifier: p
        for p in session.scalars(select(Profile).where(Profile.identifier.in_(set(reported) | set(states))))
    }
    new_foreign: list[str] = []
    for identifier, state in states.items():
        item = reported.get(identifier)
        if state.profile_id is None:
            if item is None:
                session.delete(state)  # the foreign profile is gone
            else:
                state.last_verified_at = now
            continue
        profile = known.get(identifier)
        state.installed_version = (
            None if item is None or profile is None else installed_version(profile, item.get("PayloadUUID"))
        )
        if state.installed_version is not None and state.first_confirmed_at is None:
            state.first_confirmed_at = now
        state.last_verified_at = now
        state.updated_at = now
    for identifier, item in reported.items():
        if identifier in states:
            continue
        profile = known.get(identifier)
        if profile is not None:
            # A Hikeshi profile the device has but no longer should (or not yet tracked): the
            # reconciliation below removes it unless it is desired.
            version = installed_version(profile, item.get("PayloadUUID"))
            session.add(
                DeviceProfileState(
                    device_id=device.id,
                    identifier=identifier,
                    profile_id=profile.id,
                    installed_version=version,
                    first_confirmed_at=now if version is not None else None,
                    last_verified_at=now,
                    updated_at=now,
                )
            )
            continue
        name = item.get("PayloadDisplayName")
        session.add(
            DeviceProfileState(
                device_id=device.id,
                identifier=identifier,
                foreign_display_name=name[:255] if isinstance(name, str) else None,
                foreign_first_seen_at=now,
                last_verified_at=now,
                updated_at=now,
            )
        )
        new_foreign.append(identifier)
    session.flush()
    if new_foreign:
        log.warning("device %s has profiles Hikeshi did not install: %s", device.id, ", ".join(new_foreign))
        record_event(
            session,
            ENFORCER,
            "device.foreign_profiles_found",
            "device",
            device.id,
            {
                "identifiers": new_foreign,
                "managed": [bool(reported[i].get("IsManaged")) for i in new_foreign],
            },
        )
    _forget_lost_installs(session, device)
    reconcile_devices(session, [device.id], actor=ENFORCER, context=context)
    return new_foreign


def _forget_lost_installs(session: Session, device: Device) -> None:
    """An install whose command is over without an acknowledgement is in flight no longer."""
    for state in session.scalars(
        select(DeviceProfileState).where(
            DeviceProfileState.device_id == device.id, DeviceProfileState.pending_command_uuid.is_not(None)
        )
    ):
        status = session.scalars(
            select(Command.status).where(Command.uuid == state.pending_command_uuid)
        ).first()
        if status is None or status in CommandStatus.FINAL:
            state.pending_command_uuid = state.pending_action = state.pending_version = None
