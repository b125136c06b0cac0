"""Profiles assigned to org units, and the commands that bring devices to their desired set.

A profile assigned to a unit applies to every device in that unit and below it; a device's
desired set is the union of the assignments along its path from the HQ down. Whenever that set
or a profile in it changes (assignment, unassignment, a new version, a device enrolling, or moving
unit through mdm.services.orgunits.assign_device), `reconcile_devices` turns the difference into
InstallProfile / RemoveProfile commands, queued together (commands.queue.enqueue_commands) and
pushed together after commit.

Per device and profile, DeviceProfileState keeps the desired version, the installed version (from
acknowledgements and ProfileList answers), the command in flight and when it was last verified.
An install already in flight for the same version is never queued again.

Service rules: take the Session, never commit, audit every change in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.orm import Session

from commands.context import NO_CONTEXT, CommandContext
from commands.queue import CommandRequest, batch_audit_details, cancel_command, enqueue_commands, new_batch
from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.config import Settings
from mdm.ground.models import (
    Command,
    CommandStatus,
    Device,
    DeviceProfileState,
    EnrollmentState,
    OrgUnit,
    Profile,
    ProfileAssignment,
)
from mdm.services import orgunits
from profiles.device_identity import delivery_marker, needs_device_challenge
from profiles.secret_settings import has_secrets
from profiles.service import update_profile
from profiles.signing import signed_apple_rendering, stored_apple_profile

log = logging.getLogger(__name__)

INSTALL = "install"
REMOVE = "remove"
# Enough rows per IN (...) list to stay well under SQLite's and PostgreSQL's parameter limits.
_CHUNK = 900


@dataclass
class ReconcileSummary:
    """What one reconciliation queued; `unsigned` lists profile versions that had no stored
    signed rendering and no settings to make one (queued at the next reconciliation with them)."""

    devices: int = 0
    installs: list[Command] = field(default_factory=list)
    removals: list[Command] = field(default_factory=list)
    # Undelivered installs made obsolete (a newer version, or no longer desired).
    cancelled: list[Command] = field(default_factory=list)
    unsigned: list[tuple[int, int]] = field(default_factory=list)


# -- reading -------------------------------------------------------------------------------------


def list_assignments(
    session: Session, *, profile: Profile | None = None, unit: OrgUnit | None = None
) -> list[ProfileAssignment]:
    stmt = select(ProfileAssignment).order_by(ProfileAssignment.id)
    if profile is not None:
        stmt = stmt.where(ProfileAssignment.profile_id == profile.id)
    if unit is not None:
        stmt = stmt.where(ProfileAssignment.org_unit_id == unit.id)
    return list(session.scalars(stmt))


def desired_profiles(session: Session, device: Device) -> list[Profile]:
    """The profiles assigned to the device's unit or any unit above it (none outside a unit)."""
    ids = _desired_profile_ids(session, [device])[device.id]
    if not ids:
        return []
    return list(session.scalars(select(Profile).where(Profile.id.in_(ids)).order_by(Profile.identifier)))


def profiles_along(session: Session, unit_ids: Sequence[int]) -> list[Profile]:
    """The profiles assigned to any of `unit_ids`, by identifier: `desired_profiles` for a device
    whose unit chain (its unit and every unit above it) the caller has read already, in one
    statement instead of reading the whole tree and every assignment (an Android sync, issue 18)."""
    if not unit_ids:
        return []
    return list(session.scalars(_PROFILES_ALONG, {"unit_ids": list(unit_ids)}))


_PROFILES_ALONG = (
    select(Profile)
    .where(
        Profile.id.in_(
            select(ProfileAssignment.profile_id).where(
                ProfileAssignment.org_unit_id.in_(bindparam("unit_ids", expanding=True))
            )
        )
    )
    .order_by(Profile.identifier)
)


def desired_profiles_of(session: Session, devices: Sequence[Device]) -> dict[int, list[Profile]]:
    """`desired_profiles` of several devices, in three statements whatever their number."""
    ids = _desired_profile_ids(session, devices)
    wanted = set().union(*ids.values()) if ids else set()
    profiles: dict[int, Profile] = {}
    for chunk in _chunks(sorted(wanted)):
        profiles.update((p.id, p) for p in session.scalars(select(Profile).where(Profile.id.in_(chunk))))
    return {
        device_id: sorted((profiles[i] for i in found if i in profiles), key=lambda p: p.identifier)
        for device_id, found in ids.items()
    }


def device_profile_states(session: Session, device: Device) -> list[DeviceProfileState]:
    """Per profile on this device: desired, installed, in flight, last verified; foreign ones too."""
    return list(
        session.scalars(
            select(DeviceProfileState)
            .where(DeviceProfileState.device_id == device.id)
            .order_by(DeviceProfileState.identifier)
        )
    )


def device_profile_states_of(
    session: Session, device_ids: Sequence[int]
) -> dict[int, list[DeviceProfileState]]:
    """`device_profile_states` of several devices, in one statement per 900 of them."""
    found: dict[int, list[DeviceProfileState]] = {device_id: [] for device_id in device_ids}
    for chunk in _chunks(list(device_ids)):
        for state in session.scalars(
            select(DeviceProfileState)
            .where(DeviceProfileState.device_id.in_(chunk))
            .order_by(DeviceProfileState.device_id, DeviceProfileState.identifier)
        ):
            found[state.device_id].append(state)
    return found


def _desired_profile_ids(session: Session, devices: Sequence[Device]) -> dict[int, set[int]]:
    parents: dict[int, int | None] = dict(session.execute(select(OrgUnit.id, OrgUnit.parent_id)).all())
    direct: dict[int, set[int]] = {}
    for profile_id, unit_id in session.execute(
        select(ProfileAssignment.profile_id, ProfileAssignment.org_unit_id)
    ):
        direct.setdefault(unit_id, set()).add(profile_id)
    along_path: dict[int, set[int]] = {}

    def for_unit(unit_id: int) -> set[int]:
        known = along_path.get(unit_id)
        if known is not None:
            return known
        chain: list[int] = []
        current: int | None = unit_id
        while current is not None and current not in along_path and current not in chain:
            chain.append(current)
            current = parents.get(current)
        inherited = set(along_path.get(current, set())) if current is not None else set()
        for node in reversed(chain):
            inherited = inherited | direct.get(node, set())
            along_path[node] = inherited
        return along_path[unit_id]

    return {d.id: set(for_unit(d.org_unit_id)) if d.org_unit_id is not None else set() for d in devices}


# -- changing assignments ------------------------------------------------------------------------


def assign_profile(
    session: Session,
    settings: Settings,
    profile: Profile,
    unit: OrgUnit,
    *,
    actor: Actor,
    context: CommandContext = NO_CONTEXT,
) -> ReconcileSummary:
    """Assign `profile` to `unit` (and so to everything below it) and queue the installs."""
    existing = list_assignments(session, profile=profile, unit=unit)
    if existing:
        raise ValidationError({"unit": [f"{profile.identifier} is already assigned to {unit.display_name}."]})
    # Sign first: a CA that is not ready refuses the assignment before anything is written.
    signed_apple_rendering(session, settings, profile)
    row = ProfileAssignment(
        profile_id=profile.id, org_unit_id=unit.id, assigned_by=actor.name, assigned_at=clock.now()
    )
    session.add(row)
    session.flush()
    batch = new_batch()
    summary = reconcile_devices(
        session,
        _device_ids_in_subtree(session, unit.id),
        actor=actor,
        settings=settings,
        context=context,
        batch=batch,
    )
    # One event for the assignment and every command it queued (not one per device).
    record_event(
        session,
        actor,
        "profile.assigned",
        "profile",
        profile.id,
        {
            "identifier": profile.identifier,
            "version": profile.version,
            "org_unit_id": unit.id,
            "org_unit": unit.display_name,
            **_batch_details(batch, summary),
        },
    )
    return summary


def unassign_profile(
    session: Session,
    settings: Settings | None,
    profile: Profile,
    unit: OrgUnit,
    *,
    actor: Actor,
    context: CommandContext = NO_CONTEXT,
) -> ReconcileSummary:
    """Take `profile` off `unit`; devices that no longer get it through another unit lose it."""
    rows = list_assignments(session, profile=profile, unit=unit)
    if not rows:
        raise ValidationError({"unit": [f"{profile.identifier} is not assigned to {unit.display_name}."]})
    for row in rows:
        session.delete(row)
    session.flush()
    batch = new_batch()
    summary = reconcile_devices(
        session,
        _device_ids_in_subtree(session, unit.id),
        actor=actor,
        settings=settings,
        context=context,
        batch=batch,
    )
    record_event(
        session,
        actor,
        "profile.unassigned",
        "profile",
        profile.id,
        {
            "identifier": profile.identifier,
            "org_unit_id": unit.id,
            "org_unit": unit.display_name,
            **_batch_details(batch, summary),
        },
    )
    return summary


def _batch_details(batch: str, summary: ReconcileSummary) -> dict[str, Any]:
    """The devices reached and the batch of commands queued for them (commands.queue)."""
    details = batch_audit_details(batch, [*summary.installs, *summary.removals])
    return {
        "devices_reconciled": summary.devices,
        "installs": len(summary.installs),
        "removals": len(summary.removals),
        "cancelled": len(summary.cancelled),
        **details,
    }


def apply_profile_version(
    session: Session,
    settings: Settings,
    profile: Profile,
    *,
    actor: Actor,
    context: CommandContext = NO_CONTEXT,
) -> ReconcileSummary:
    """After a new version of `profile`: sign it and re-install it wherever it is desired."""
    signed_apple_rendering(session, settings, profile)
    device_ids = set(
        session.scalars(
            select(DeviceProfileState.device_id).where(DeviceProfileState.profile_id == profile.id)
        )
    )
    for assignment in list_assignments(session, profile=profile):
        device_ids |= _device_ids_in_subtree(session, assignment.org_unit_id)
    batch = new_batch()
    summary = reconcile_devices(
        session, device_ids, actor=actor, settings=settings, context=context, batch=batch
    )
    if summary.installs or summary.removals:
        # One event for the new version's installs on every device (not one per device).
        record_event(
            session,
            actor,
            "profile.version_applied",
            "profile",
            profile.id,
            {"identifier": profile.identifier, "version": profile.version, **_batch_details(batch, summary)},
        )
    return summary


def update_profile_and_apply(
    session: Session,
    settings: Settings,
    profile: Profile,
    spec: Any,
    *,
    actor: Actor,
    context: CommandContext = NO_CONTEXT,
) -> tuple[Profile, ReconcileSummary | None]:
    """profiles.service.update_profile, then push the new version to the devices that have it."""
    before = profile.version
    update_profile(session, actor, profile, spec, secret_key=settings.secret_key)
    if profile.version == before:
        return profile, None
    return profile, apply_profile_version(session, settings, profile, actor=actor, context=context)


def reconcile_unit(
    session: Session,
    settings: Settings | None,
    unit: OrgUnit,
    *,
    actor: Actor,
    context: CommandContext = NO_CONTEXT,
) -> ReconcileSummary:
    """Reconcile every device in `unit` and below; call after mdm.services.orgunits.move_unit."""
    return reconcile_devices(
        session, _device_ids_in_subtree(session, unit.id), actor=actor, settings=settings, context=context
    )


def _device_ids_in_subtree(session: Session, unit_id: int) -> set[int]:
    unit_ids = list(orgunits.subtree_ids(session, unit_id))
    found: set[int] = set()
    for chunk in _chunks(unit_ids):
        found.update(session.scalars(select(Device.id).where(Device.org_unit_id.in_(chunk))))
    return found


# -- reconciliation ------------------------------------------------------------------------------


def reconcile_devices(
    session: Session,
    device_ids: Iterable[int],
    *,
    actor: Actor,
    settings: Settings | None = None,
    context: CommandContext = NO_CONTEXT,
    batch: str | None = None,
) -> ReconcileSummary:
    """Queue what brings each enrolled Apple device to its desired profile set.

    Installs what is desired and not installed at its current version (unless that very install
    is already in flight), removes Hikeshi profiles no longer desired. Without `settings`, only
    versions whose signed rendering is already stored can be sent (see profiles.signing).
    With `batch`, the commands are audited by the caller's one event for the batch
    (commands.queue.enqueue_commands).
    """
    summary = ReconcileSummary()
    devices = _load_devices(session, device_ids)
    if not devices:
        return summary
    summary.devices = len(devices)
    desired = _desired_profile_ids(session, devices)
    all_profile_ids = set().union(*desired.values()) if desired else set()
    states = _load_states(session, [d.id for d in devices])
    all_profile_ids |= {s.profile_id for rows in states.values() for s in rows.values() if s.profile_id}
    profiles = _load_profiles(session, all_profile_ids)
    in_flight = _pending_commands(session, states)
    payloads: dict[int, dict[str, Any] | None] = {}
    now = clock.now()

    requests: list[CommandRequest] = []
    targets: list[tuple[DeviceProfileState, str, int | None]] = []
    to_cancel: list[Command] = []
    fresh: list[DeviceProfileState] = []  # new states, not in the session
    for device in devices:
        device_states = states.get(device.id, {})
        for profile_id in sorted(desired[device.id]):
            profile = profiles[profile_id]
            state = device_states.get(profile.identifier)
            if state is None:
                # Written below in one INSERT with its pending install, not one by one here.
                state = DeviceProfileState(
                    device_id=device.id,
                    identifier=profile.identifier,
                    profile_id=profile.id,
                    updated_at=now,
                )
                fresh.append(state)
                device_states[profile.identifier] = state
            if state.profile_id != profile.id:
                # A foreign profile with the same identifier becomes the managed one.
                state.profile_id = profile.id
                state.foreign_display_name = None
            if state.desired_version != profile.version:
                state.desired_version = profile.version
                state.updated_at = now
            pending = in_flight.get(state.pending_command_uuid or "")
            removing = pending is not None and state.pending_action == REMOVE
            if (
                removing
                and pending is not None
                and pending.status in (CommandStatus.QUEUED, CommandStatus.NOT_NOW)
            ):
                # Wanted again before its removal was delivered: the removal is simply dropped.
                to_cancel.append(pending)
                state.pending_command_uuid = state.pending_action = state.pending_version = None
                removing = False
            # Wanted again while its removal is on the device: install after it (same priority, later).
            if state.installed_version == profile.version and not removing:
                continue
            if pending is not None and state.pending_action == INSTALL:
                if state.pending_version == profile.version:
                    continue
                if pending.status in (CommandStatus.QUEUED, CommandStatus.NOT_NOW):
                    to_cancel.append(pending)
            if profile.id not in payloads:
                payloads[profile.id] = _install_params(session, settings, profile, summary)
            params = payloads[profile.id]
            if params is None:
                continue
            requests.append(CommandRequest(device, "InstallProfile", params))
            targets.append((state, INSTALL, profile.version))
        for identifier, state in device_states.items():
            if state.profile_id is None or state.profile_id in desired[device.id]:
                continue
            if state.desired_version is not None:
                state.desired_version = None
                state.updated_at = now
            pending = in_flight.get(state.pending_command_uuid or "")
            if pending is not None and state.pending_action == REMOVE:
                continue
            if pending is not None and pending.status in (CommandStatus.QUEUED, CommandStatus.NOT_NOW):
                # Never delivered: cancelling it is enough when nothing else was installed.
                to_cancel.append(pending)
                pending = None
            if state.installed_version is None and pending is None:
                session.delete(state)
                continue
            requests.append(CommandRequest(device, "RemoveProfile", {"Identifier": identifier}))
            targets.append((state, REMOVE, None))

    for command in to_cancel:
        summary.cancelled.append(cancel_command(session, command, actor=actor))
    session.flush()
    commands = enqueue_commands(session, requests, actor=actor, context=context, batch=batch)
    for (state, action, version), command in zip(targets, commands, strict=True):
        state.pending_command_uuid = command.uuid
        state.pending_action = action
        state.pending_version = version
        state.updated_at = now
        (summary.installs if action == INSTALL else summary.removals).append(command)
    _insert_states(session, fresh)
    session.flush()
    return summary


def _insert_states(session: Session, states: list[DeviceProfileState]) -> None:
    """New states in one executemany INSERT: nothing reads their ids back, and a fleet-wide
    assignment makes thousands (the ORM's flush would return every id)."""
    if not states:
        return
    columns = [c.key for c in DeviceProfileState.__table__.columns if c.key != "id"]
    rows = [{key: getattr(state, key) for key in columns} for state in states]
    # render_nulls: one statement for all rows (the ORM would group them by their None columns).
    session.execute(insert(DeviceProfileState).execution_options(render_nulls=True), rows)


def _install_params(
    session: Session, settings: Settings | None, profile: Profile, summary: ReconcileSummary
) -> dict[str, Any] | None:
    if settings is not None:
        stored = signed_apple_rendering(session, settings, profile)
    else:
        found = stored_apple_profile(session, profile.id, profile.version)
        if found is None:
            log.warning(
                "profile %s v%s has no signed rendering yet; it is installed at the next reconciliation",
                profile.identifier,
                profile.version,
            )
            summary.unsigned.append((profile.id, profile.version))
            return None
        stored = found
    # The stored rendering by reference: stored once per version, read at delivery
    # (commands.kinds.install_profile), never copied into every device's command.
    params: dict[str, Any] = {
        "Rendering": {"profile_id": profile.id, "version": profile.version, "sha256": stored.sha256}
    }
    if needs_device_challenge(profile.spec) or has_secrets(profile.spec):
        # Made for each device when delivered: its own one-time SCEP challenge and the profile's
        # secrets, which the shared rendering in these parameters never holds (device_identity).
        params["DeviceIdentity"] = delivery_marker(profile.id, profile.version)
    return params


def _load_devices(session: Session, device_ids: Iterable[int]) -> list[Device]:
    ids = sorted(set(device_ids))
    devices: list[Device] = []
    for chunk in _chunks(ids):
        devices.extend(
            session.scalars(
                select(Device).where(
                    Device.id.in_(chunk),
                    Device.platform == "apple",
                    Device.enrollment_state == EnrollmentState.ENROLLED,
                )
            )
        )
    return sorted(devices, key=lambda d: d.id)


def _load_states(session: Session, device_ids: list[int]) -> dict[int, dict[str, DeviceProfileState]]:
    states: dict[int, dict[str, DeviceProfileState]] = {}
    for chunk in _chunks(device_ids):
        for state in session.scalars(
            select(DeviceProfileState).where(DeviceProfileState.device_id.in_(chunk))
        ):
            states.setdefault(state.device_id, {})[state.identifier] = state
    return states


def _load_profiles(session: Session, profile_ids: set[int]) -> dict[int, Profile]:
    found: dict[int, Profile] = {}
    for chunk in _chunks(sorted(profile_ids)):
        found.update({p.id: p for p in session.scalars(select(Profile).where(Profile.id.in_(chunk)))})
    return found


def _pending_commands(
    session: Session, states: dict[int, dict[str, DeviceProfileState]]
) -> dict[str, Command]:
    uuids = sorted(
        {s.pending_command_uuid for rows in states.values() for s in rows.values() if s.pending_command_uuid}
    )
    found: dict[str, Command] = {}
    for chunk in _chunks(uuids):
        for command in session.scalars(
            select(Command).where(Command.uuid.in_(chunk), Command.status.in_(CommandStatus.PENDING))
        ):
            found[command.uuid] = command
    return found


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


# -- hooks: enrollment, a device moving unit, command results ------------------------------------


def follow_moved_device(
    session: Session,
    device: Device,
    from_unit_id: int | None,
    to_unit_id: int | None,
    actor: Actor,
    *,
    context: CommandContext,
) -> None:
    """orgunits.DEVICE_MOVED: connected by the wiring, the application's CommandContext bound."""
    # mdm.services.orgunits.assign_device is the one way a device changes unit: its desired set changed.
    reconcile_devices(session, [device.id], actor=actor, context=context)


def follow_moved_unit(session: Session, unit: OrgUnit, actor: Actor, *, context: CommandContext) -> None:
    """orgunits.UNIT_MOVED: connected by the wiring, the application's CommandContext bound."""
    # The unit's new ancestors assign other profiles: every device below it has a new desired set.
    reconcile_unit(session, None, unit, actor=actor, context=context)


def install_on_enrollment(session: Session, device: Device, actor: Actor, *, context: CommandContext) -> None:
    """devices.DEVICE_ENROLLED: connected by the wiring, the application's CommandContext bound."""
    # A device enrolling again lost every profile MDM installed when it left: start afresh.
    session.execute(
        delete(DeviceProfileState)
        .where(DeviceProfileState.device_id == device.id)
        .execution_options(synchronize_session="fetch")
    )
    reconcile_devices(session, [device.id], actor=actor, context=context)
