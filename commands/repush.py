"""Nothing waits for a chance check-in: a command still waiting is woken for again, with a cap.

A push only asks a device to connect; it may be lost on the way, the device may be asleep, or its
acknowledgement may have been lost (a 503 during a database outage leaves the command `sent`).
So every sweep asks for one new wake-up (an outbox row, mdm.ground.push.outbox) for each device with a
command that has waited a full interval since it was queued or last woken for; every such
command counts that wake-up, the interval doubles after each, and after `max_repushes` the
server stops asking. A
coalescing command (an inventory refresh) that reached the cap is expired with the reason, so a
fresh one can be queued; anything else keeps waiting for the device (lock and wipe never expire).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from commands.catalog import UnknownCommand, get_command_type
from mdm.ground import clock
from mdm.ground.audit import SYSTEM, record_event
from mdm.ground.models import Command, CommandStatus
from mdm.ground.push import request_pushes

# Commands looked at per sweep; the rest wait for the next one.
SWEEP_LIMIT = 5000


@dataclass(frozen=True)
class RepushPolicy:
    first_after: timedelta
    max_repushes: int

    def due(self, repushes: int) -> timedelta:
        return self.first_after * (2**repushes)


def repush_waiting(session: Session, policy: RepushPolicy) -> dict[str, int]:
    """Ask again for the devices whose commands wait too long; expire capped refreshes."""
    now = clock.now()
    last_wake = func.coalesce(Command.repushed_at, Command.pushed_at, Command.queued_at)
    candidates = session.scalars(
        select(Command)
        .where(Command.status.in_(CommandStatus.PENDING), last_wake <= now - policy.first_after)
        .order_by(Command.id)
        .limit(SWEEP_LIMIT)
    ).all()
    devices: set[int] = set()
    expired = 0
    for command in candidates:
        last = command.repushed_at or command.pushed_at or command.queued_at
        if now - last < policy.due(command.repushes):
            continue
        if command.repushes >= policy.max_repushes:
            if _coalesces(command.request_type):
                _expire(session, command, policy)
                expired += 1
            continue
        # One wake-up per device: it fetches every waiting command, so each due one counts it.
        devices.add(command.device_id)
        command.repushes += 1
        command.repushed_at = now
    request_pushes(session, devices)
    return {"devices_repushed": len(devices), "expired": expired}


def _coalesces(request_type: str) -> bool:
    try:
        return get_command_type(request_type).coalesce
    except UnknownCommand:
        return False


def _expire(session: Session, command: Command, policy: RepushPolicy) -> None:
    waited = clock.now() - command.queued_at
    command.status = CommandStatus.EXPIRED
    command.expired_at = clock.now()
    command.sealed_secret = None
    command.expired_reason = (
        f"no answer from the device after {command.repushes} wake-ups over {_hours(waited)} hours"
    )[:255]
    record_event(
        session,
        SYSTEM,
        "command.expired",
        "command",
        command.uuid,
        {
            "device_id": command.device_id,
            "request_type": command.request_type,
            "reason": command.expired_reason,
        },
    )


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f}"
