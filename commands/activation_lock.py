"""Keeping each supervised Apple device's Activation Lock as its unit says, and its bypass code
escrowed.

For an enrolled, supervised Apple device (a device whose supervision is unknown gets nothing:
unknown is not "supervised"):

- the setting: when what the device has (its MDMOptions answer, else the value it acknowledged
  since it last enrolled) differs from its unit's, or is unknown, a Settings command (MDMOptions)
  is queued, replacing a waiting one that says otherwise;
- the escrow: when no bypass code is escrowed since it last enrolled, and it has not said since
  that it has none, ActivationLockBypassCode is queued (Apple keeps the code only 15 days after
  supervision, so this runs as soon as Hikeshi learns of it).

When: a DeviceInformation answer first says the device is supervised (SUPERVISION_REPORTED), a
supervised device enrolls again (after a wipe), an administrator changes a unit's setting (every
device below it). A device or unit that moves follows only where what applies to it changed.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.context import CommandContext
from commands.kinds.mdm_options import allowed_in_params, mdm_options_params
from commands.queue import cancel_command, enqueue_command, pending_command_of_type
from mdm.ground.audit import SYSTEM, Actor
from mdm.ground.models import (
    Command,
    CommandStatus,
    Device,
    DeviceActivationLock,
    EnrollmentState,
    OrgUnit,
)
from mdm.services import orgunits
from mdm.services.activation_lock.status import device_allows, since_enrollment
from mdm.services.activation_lock.unit_setting import ActivationLockBook

SETTINGS = "Settings"
BYPASS_CODE = "ActivationLockBypassCode"


def _pending_settings(session: Session, device: Device) -> list[Command]:
    return list(
        session.scalars(
            select(Command).where(
                Command.device_id == device.id,
                Command.request_type == SETTINGS,
                Command.status.in_(CommandStatus.PENDING),
            )
        )
    )


def _manageable(device: Device) -> bool:
    return (
        device.platform == "apple"
        and device.enrollment_state == EnrollmentState.ENROLLED
        and device.is_supervised is True
    )


def _ensure_setting(
    session: Session,
    device: Device,
    wanted: bool,
    actor: Actor,
    *,
    push: bool,
    context: CommandContext,
    when_unknown: bool = True,
) -> None:
    has = device_allows(session, device)
    if has is wanted or (has is None and not when_unknown):
        return
    waiting = _pending_settings(session, device)
    if any(allowed_in_params(c.params) is wanted for c in waiting):
        return
    for command in waiting:
        if command.status in (CommandStatus.QUEUED, CommandStatus.NOT_NOW):
            cancel_command(session, command, actor=actor)
    enqueue_command(
        session, device, SETTINGS, mdm_options_params(wanted), actor=actor, push=push, context=context
    )


def _ensure_escrow(
    session: Session, device: Device, actor: Actor, *, push: bool, context: CommandContext
) -> None:
    row = session.get(DeviceActivationLock, device.id)
    if (
        row is not None
        and row.bypass_code_sealed is not None
        and since_enrollment(row.bypass_code_escrowed_at, device)
    ):
        return
    if row is not None and since_enrollment(row.bypass_code_unavailable_at, device):
        return  # it said it has none; asked again after it enrolls anew
    if pending_command_of_type(session, device, BYPASS_CODE) is None:
        enqueue_command(session, device, BYPASS_CODE, None, actor=actor, push=push, context=context)


def reconcile_activation_lock(
    session: Session,
    devices: Iterable[Device],
    *,
    context: CommandContext,
    actor: Actor = SYSTEM,
    push: bool = False,
) -> None:
    """The setting and the escrow, for each manageable device of `devices`."""
    book = ActivationLockBook(session)
    for device in devices:
        if not _manageable(device):
            continue
        wanted = book.for_unit(device.org_unit_id).allowed
        _ensure_setting(session, device, wanted, actor, push=push, context=context)
        _ensure_escrow(session, device, actor, push=push, context=context)


def after_supervision_reported(session: Session, device: Device, *, context: CommandContext) -> None:
    """Connected to SUPERVISION_REPORTED. No push: the device is talking to us now and fetches
    its next command in the same connection."""
    reconcile_activation_lock(session, [device], context=context)


def after_enrollment(session: Session, device: Device, actor: Actor, *, context: CommandContext) -> None:
    """Connected to DEVICE_ENROLLED: a tablet known to be supervised enrolling again (ADE after a
    wipe) has forgotten its setting and has a new bypass code."""
    if device.is_supervised is True:
        reconcile_activation_lock(session, [device], actor=actor, context=context)


def follow_moved_device(
    session: Session,
    device: Device,
    from_unit_id: int | None,
    to_unit_id: int | None,
    actor: Actor,
    *,
    context: CommandContext,
) -> None:
    book = ActivationLockBook(session)
    wanted = book.for_unit(to_unit_id).allowed
    if _manageable(device) and wanted != book.for_unit(from_unit_id).allowed:
        _ensure_setting(session, device, wanted, actor, push=True, context=context)


def follow_moved_unit(session: Session, unit: OrgUnit, actor: Actor, *, context: CommandContext) -> None:
    # Its new ancestors may say otherwise; devices whose setting is unknown wait for an answer.
    book = ActivationLockBook(session)
    for device in _devices_below(session, unit.id):
        wanted = book.for_unit(device.org_unit_id).allowed
        _ensure_setting(session, device, wanted, actor, push=True, when_unknown=False, context=context)


def _devices_below(session: Session, unit_id: int) -> list[Device]:
    unit_ids = orgunits.subtree_ids(session, unit_id)
    found = session.scalars(select(Device).where(Device.org_unit_id.in_(unit_ids)).order_by(Device.id))
    return [d for d in found if _manageable(d)]


def apply_unit_setting(session: Session, unit_id: int, *, actor: Actor, context: CommandContext) -> int:
    """After an administrator changed a unit's setting: every device below it follows. Returns how
    many devices are manageable (enrolled, supervised Apple) there."""
    devices = _devices_below(session, unit_id)
    reconcile_activation_lock(session, devices, actor=actor, push=True, context=context)
    return len(devices)
