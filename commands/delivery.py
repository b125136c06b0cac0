"""Handing a device its next commands: one locked function for every platform.

Apple's /mdm/connect carries one command per answer, an Android sync up to twenty; both take
them here, highest priority first (lock and lost mode jump the queue, DESIGN.md invariant 2),
oldest first within a priority, and mark them sent. On PostgreSQL the rows are locked until the
caller commits, so a delivery never overwrites what a concurrent request of the same device has
just recorded (an acknowledgement turned back into "sent", a command handed over once more after
its answer). The caller commits before it answers the device: what the device is told has been
recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.command_type import UndeliverableCommand
from commands.context import NO_CONTEXT, CommandContext
from commands.results import record_result
from mdm.ground import clock
from mdm.ground.audit import SYSTEM, Actor
from mdm.ground.db import is_postgres
from mdm.ground.models import Command, CommandStatus, Device

Rendered = TypeVar("Rendered")
__all__ = ["UndeliverableCommand", "commands_waiting", "deliver_next_commands", "next_command"]


def deliver_next_commands(
    session: Session,
    device: Device,
    render: Callable[[Command], Rendered],
    *,
    limit: int,
    offer_not_now: bool,
    actor: Actor,
    skip: Collection[str] = frozenset(),
    context: CommandContext = NO_CONTEXT,
) -> list[Rendered]:
    """Up to `limit` commands for `device`, each rendered for its platform and marked sent.

    Sent but unanswered commands are handed over again: the device may have lost the answer that
    carried them and recognises a command by its UUID. A command answered NotNow waits until
    `offer_not_now` (Apple: the device says Idle; Android: every sync), and the UUIDs in `skip`
    (answered NotNow in this very request) wait for the next request. A command `render` refuses
    with UndeliverableCommand ends in error, recorded like a device's CommandFormatError, and the
    next one is taken instead.
    """
    statuses = [CommandStatus.QUEUED, CommandStatus.SENT]
    if offer_not_now:
        statuses.append(CommandStatus.NOT_NOW)
    delivered: list[Rendered] = []
    taken: set[int] = set()
    while len(delivered) < limit:
        wanted = limit - len(delivered)
        stmt = (
            select(Command)
            .where(Command.device_id == device.id, Command.status.in_(statuses))
            .order_by(Command.priority.desc(), Command.id)
            .limit(wanted)
        )
        if skip:
            stmt = stmt.where(Command.uuid.not_in(skip))
        if taken:
            stmt = stmt.where(Command.id.not_in(taken))
        if is_postgres(session):
            # Wait for the row rather than skip it: the lock is held only for a moment (another
            # connection of the device, or the dispatcher stamping pushed_at), and skipping would
            # hand the device an empty reply while its lock command is waiting.
            stmt = stmt.with_for_update()
        batch = list(session.scalars(stmt))
        now = clock.now()
        for command in batch:
            taken.add(command.id)
            if command.expires_at is not None and command.expires_at < now:
                # Past its lifetime: never delivered. Expired here, where it is met, rather than
                # by a sweep of the device's queue on every request (the scheduler's
                # command_expiry job expires the ones no delivery reaches).
                command.status = CommandStatus.EXPIRED
                command.expired_at = now
                command.sealed_secret = None
                continue
            try:
                rendered = render(command)
            except UndeliverableCommand as exc:
                _refuse(session, device, command, str(exc), actor, context)
                continue
            command.status = CommandStatus.SENT
            command.sent_at = now
            command.delivery_count += 1
            delivered.append(rendered)
        if len(batch) < wanted:
            break
    return delivered


def next_command(
    session: Session,
    device: Device,
    *,
    offer_not_now: bool,
    actor: Actor = SYSTEM,
    context: CommandContext = NO_CONTEXT,
) -> Command | None:
    """The one command to hand `device` now, marked sent; None when nothing is waiting."""
    found = deliver_next_commands(
        session, device, _as_queued, limit=1, offer_not_now=offer_not_now, actor=actor, context=context
    )
    return found[0] if found else None


def commands_waiting(session: Session, device_id: int) -> bool:
    """Whether a command is queued and not yet handed over (what ends an Android long poll)."""
    return (
        session.scalars(
            select(Command.id)
            .where(Command.device_id == device_id, Command.status == CommandStatus.QUEUED)
            .limit(1)
        ).first()
        is not None
    )


def _as_queued(command: Command) -> Command:
    return command


def _refuse(
    session: Session, device: Device, command: Command, reason: str, actor: Actor, context: CommandContext
) -> None:
    report = {
        "CommandUUID": command.uuid,
        "Status": "Error",
        "ErrorChain": [
            {"ErrorDomain": f"hikeshi.{device.platform}", "ErrorCode": 0, "USEnglishDescription": reason}
        ],
    }
    record_result(session, device, report, json.dumps(report).encode(), actor=actor, context=context)
