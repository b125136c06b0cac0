"""Queueing inventory: after enrollment, on demand, and for devices whose inventory is due.

It lives with the commands, not in mdm/services/inventory: the inventory commands parse their
answers with inventory's parsers (commands -> inventory), so inventory itself never queues.

Inventory commands coalesce in the command queue (CommandType.coalesce): a device that has not
fetched its last refresh never gets a second one of the same kind, so an offline tablet holds at
most one pending command per kind however long it stays away.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session

from commands.context import NO_CONTEXT, CommandContext
from commands.queue import enqueue_command
from mdm.ground import clock
from mdm.ground.audit import Actor
from mdm.ground.models import Command, CommandStatus, Device, DeviceFacts, EnrollmentState
from mdm.services.unit_policy import PolicyBook, UnitPolicy

INVENTORY_KINDS = (
    "DeviceInformation",
    "SecurityInfo",
    "InstalledApplicationList",
    "ProfileList",
    "CertificateList",
)


def queue_inventory_refresh(
    session: Session,
    device: Device,
    actor: Actor,
    kinds: Iterable[str] = INVENTORY_KINDS,
    *,
    push: bool = True,
    context: CommandContext = NO_CONTEXT,
) -> list[Command]:
    """Queue each inventory kind for the device; a kind already pending is reused, not doubled."""
    commands = []
    for kind in kinds:
        if kind not in INVENTORY_KINDS:
            raise ValueError(f"{kind} is not an inventory command")
        commands.append(enqueue_command(session, device, kind, None, actor=actor, push=push, context=context))
    return commands


def queue_first_inventory(session: Session, device: Device, actor: Actor, *, context: CommandContext) -> None:
    """Connected to mdm.services.devices' DEVICE_ENROLLED by the wiring, the application's
    CommandContext bound."""
    # No push: a device that has just sent TokenUpdate connects to the server URL next anyway.
    if device.platform == "apple":
        queue_inventory_refresh(session, device, actor, push=False, context=context)


def devices_due_for_refresh(
    session: Session, *, default_interval_hours: int | None = None, limit: int = 5000
) -> list[Device]:
    """Enrolled Apple devices whose last DeviceInformation is older than their unit's interval
    (units without one: `default_interval_hours`, else 4 h) and which have no DeviceInformation
    still waiting."""
    now = clock.now()
    base = (
        UnitPolicy()
        if default_interval_hours is None
        else UnitPolicy(inventory_interval_hours=default_interval_hours)
    )
    book = PolicyBook(session, base)
    pending = exists().where(
        Command.device_id == Device.id,
        Command.request_type == "DeviceInformation",
        Command.status.in_(CommandStatus.PENDING),
    )
    # The shortest interval any unit uses bounds the query; the exact per-unit check follows.
    intervals = [book.for_unit(u).inventory_interval_hours for u in [None, *book.parents]]
    shortest = timedelta(hours=min(intervals))
    rows = session.scalars(
        select(Device)
        .outerjoin(DeviceFacts, DeviceFacts.device_id == Device.id)
        .where(
            Device.enrollment_state == EnrollmentState.ENROLLED,
            Device.platform == "apple",
            ~pending,
            or_(
                DeviceFacts.device_id.is_(None),
                DeviceFacts.device_information_at.is_(None),
                and_(DeviceFacts.device_information_at < now - shortest),
            ),
        )
        .order_by(Device.id)
        .limit(limit)
    ).all()
    due = []
    for device in rows:
        facts = session.get(DeviceFacts, device.id)
        interval = timedelta(hours=book.for_unit(device.org_unit_id).inventory_interval_hours)
        if (
            facts is None
            or facts.device_information_at is None
            or facts.device_information_at < now - interval
        ):
            due.append(device)
    return due


def refresh_due_devices(
    session: Session,
    actor: Actor,
    *,
    default_interval_hours: int | None = None,
    limit: int = 5000,
    context: CommandContext = NO_CONTEXT,
) -> int:
    """Queue a full refresh for every device that is due; returns how many devices."""
    devices = devices_due_for_refresh(session, default_interval_hours=default_interval_hours, limit=limit)
    for device in devices:
        queue_inventory_refresh(session, device, actor, context=context)
    return len(devices)
