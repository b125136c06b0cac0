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
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import BindParameter, ColumnElement, Select, bindparam, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased, load_only
from sqlalchemy.orm.attributes import set_committed_value

from commands.command_type import UndeliverableCommand
from commands.context import NO_CONTEXT, CommandContext
from commands.queue import QUEUED_HERE
from commands.results import record_result
from mdm.ground import clock
from mdm.ground.audit import SYSTEM, Actor
from mdm.ground.db import is_postgres, one_of
from mdm.ground.device_rows import hold_device_row
from mdm.ground.models import Command, CommandStatus, Device

Rendered = TypeVar("Rendered")
__all__ = [
    "NOT_LOOKED",
    "UndeliverableCommand",
    "commands_waiting",
    "deliver_next_commands",
    "more_than_one_waiting",
    "next_command",
    "waiting_command",
]

# `deliver_next_commands` was not told what waits (it looks itself).
NOT_LOOKED: Any = object()


def _deliverable(offer_not_now: bool) -> list[str]:
    statuses = [CommandStatus.QUEUED, CommandStatus.SENT]
    if offer_not_now:
        statuses.append(CommandStatus.NOT_NOW)
    return statuses


def _waiting_for(device_id: Any, offer_not_now: bool) -> tuple[ColumnElement[bool], ...]:
    """The commands of the device `device_id` names that a request may hand over now."""
    return (Command.device_id == device_id, one_of(Command.status, _deliverable(offer_not_now)))


# The order they are handed over in: the highest priority first, then the oldest.
_FIRST_FIRST = (Command.priority.desc(), Command.id)


# One alias for every request: a fresh one per request costs more CPU (its column proxies) than
# the rest of the statement, and would miss SQLAlchemy's statement cache.
_WAITING = aliased(Command, name="waiting_command")
# What `_claim` and a command's rendering read of the waiting command (the rest loads if asked):
# a request with nothing waiting still reads each column's description back (issue 18).
_WAITING_READ = (
    load_only(
        _WAITING.id,
        _WAITING.uuid,
        _WAITING.request_type,
        _WAITING.params,
        _WAITING.status,
        _WAITING.expires_at,
        _WAITING.delivery_count,
    ),
)


def waiting_command(
    device_id: ColumnElement[int] | InstrumentedAttribute[int],
    *,
    offer_not_now: bool,
    skip: BindParameter[str] | None = None,
) -> tuple[Any, Any, tuple[Any, ...]]:
    """The command `deliver_next_commands` would take first for the device `device_id` names, as an
    outer join (entity, ON clause, loader options) for the request's identity read to carry
    (mdm.services.devices.identify_device_with): a request with nothing waiting asks nothing more,
    one with a command waiting claims it with one guarded UPDATE. `skip`: the parameter the UUID
    the request itself answers is bound to. Built once per shape (a module constant of the caller):
    the statement is then built once, not at every request."""
    first = select(Command.id).where(*_waiting_for(device_id, offer_not_now)).order_by(*_FIRST_FIRST).limit(1)
    if skip is not None:
        first = first.where(Command.uuid != skip)
    return _WAITING, _WAITING.id == first.scalar_subquery(), _WAITING_READ


def more_than_one_waiting(device_id: ColumnElement[int] | InstrumentedAttribute[int]) -> Any:
    """Whether more than one command waits for the device `device_id` names (NotNow ones
    included), as a column for a request's identity read to carry beside `waiting_command`: when
    only the one it found waits, `deliver_next_commands` need not read the queue for more. Looks at
    two rows at most, however long the queue."""
    # EXISTS of a second one: a subquery in the WHERE clause, so that it correlates with the
    # device of the enclosing read (one in a FROM clause would count every device's commands).
    second = select(Command.id).where(*_waiting_for(device_id, True)).offset(1)
    return second.exists().label("more_than_one_waiting")


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
    looked_ahead: Command | None = NOT_LOOKED,
    looked_ahead_alone: bool = False,
) -> list[Rendered]:
    """Up to `limit` commands for `device`, each rendered for its platform and marked sent.

    Sent but unanswered commands are handed over again: the device may have lost the answer that
    carried them and recognises a command by its UUID. A command answered NotNow waits until
    `offer_not_now` (Apple: the device says Idle; Android: every sync), and the UUIDs in `skip`
    (answered NotNow in this very request) wait for the next request. A command `render` refuses
    with UndeliverableCommand ends in error, recorded like a device's CommandFormatError, and the
    next one is taken instead.

    `looked_ahead`: the command `waiting_command` found in this request's identity read (None:
    nothing was waiting then). It is claimed with one UPDATE guarded by the state it was read in;
    the queue is read (and locked) only when that claim loses a race, when it was not the only
    one wanted, or when this session queued commands since (a result's follow-ups).
    `looked_ahead_alone`: it was the only command waiting then (`more_than_one_waiting`): once it
    is handed over (or expired, or refused), the queue is not read for more.
    """
    statuses = _deliverable(offer_not_now)
    delivered: list[Rendered] = []
    taken: set[int] = set()
    queued_since = session.info.pop(QUEUED_HERE, False)
    if looked_ahead is not NOT_LOOKED and not queued_since:
        if looked_ahead is None:
            return delivered
        taken.add(looked_ahead.id)
        rendered = _claim(session, device, looked_ahead, statuses, render, actor, context)
        if rendered is not _LOST:
            if rendered is not _NOTHING:
                delivered.append(rendered)
            if len(delivered) >= limit or looked_ahead_alone:
                return delivered
        else:
            taken.discard(looked_ahead.id)
    while len(delivered) < limit:
        wanted = limit - len(delivered)
        stmt = _queue_read(offer_not_now)
        if skip:
            stmt = stmt.where(Command.uuid.not_in(skip))
        if taken:
            stmt = stmt.where(Command.id.not_in(taken))
        if is_postgres(session):
            hold_device_row(session, device.id)
            # Wait for the row rather than skip it: the lock is held only for a moment (another
            # connection of the device, or the dispatcher stamping pushed_at), and skipping would
            # hand the device an empty reply while its lock command is waiting.
            stmt = stmt.with_for_update()
        batch = list(session.scalars(stmt, {"queue_device_id": device.id, "queue_limit": wanted}))
        now = clock.now()
        for command in batch:
            taken.add(command.id)
            if command.expires_at is not None and command.expires_at < now:
                _expire(command, now)
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


@lru_cache(maxsize=2)
def _queue_read(offer_not_now: bool) -> Select[Command]:
    """The device's deliverable commands in order, built once per shape (every Android sync reads
    the queue; building the statement cost more CPU than running it)."""
    return (
        select(Command)
        .where(*_waiting_for(bindparam("queue_device_id"), offer_not_now))
        .order_by(*_FIRST_FIRST)
        .limit(bindparam("queue_limit"))
    )


# What `_claim` says when the command was not handed over: it changed since it was read (another
# request of the device), or it was expired or refused instead (the queue is read for the next).
_LOST: Any = object()
_NOTHING: Any = object()


# The claim's UPDATE, built once (building it cost more CPU than running it).
_CLAIM = (
    update(Command)
    .where(
        Command.id == bindparam("claim_id"),
        Command.device_id == bindparam("claim_device_id"),
        Command.status == bindparam("claim_status"),
        Command.delivery_count == bindparam("claim_delivery_count"),
    )
    .values(
        status=CommandStatus.SENT,
        sent_at=bindparam("claim_sent_at", type_=Command.__table__.c.sent_at.type),
        delivery_count=Command.delivery_count + 1,
    )
)


def _claim(
    session: Session,
    device: Device,
    command: Command,
    statuses: Collection[str],
    render: Callable[[Command], Rendered],
    actor: Actor,
    context: CommandContext,
) -> Any:
    """Hand over `command`, read without a lock: rendered first (what the device cannot be given is
    refused, as in the loop), then marked sent by an UPDATE that holds only while the row is still
    in the state it was read in. PostgreSQL re-checks that condition after waiting for a concurrent
    writer's row lock, so an answer recorded meanwhile is never turned back into "sent"."""
    if command.status not in statuses:
        return _LOST  # changed in this very transaction (a result's hook cancelled it)
    now = clock.now()
    if command.expires_at is not None and command.expires_at < now:
        _expire(command, now)
        return _NOTHING
    try:
        rendered = render(command)
    except UndeliverableCommand as exc:
        _refuse(session, device, command, str(exc), actor, context)
        return _NOTHING
    claimed = session.execute(
        _CLAIM,
        {
            "claim_id": command.id,
            "claim_device_id": device.id,
            "claim_status": command.status,
            "claim_delivery_count": command.delivery_count,
            "claim_sent_at": now,
        },
        execution_options={"synchronize_session": False},
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        session.expire(command)
        return _LOST
    set_committed_value(command, "status", CommandStatus.SENT)
    set_committed_value(command, "sent_at", now)
    set_committed_value(command, "delivery_count", command.delivery_count + 1)
    return rendered


def _expire(command: Command, now: Any) -> None:
    # Past its lifetime: never delivered. Expired here, where it is met, rather than by a sweep
    # of the device's queue on every request (the scheduler's command_expiry job expires the
    # ones no delivery reaches).
    command.status = CommandStatus.EXPIRED
    command.expired_at = now
    command.sealed_secret = None


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
