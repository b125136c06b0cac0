"""Polling the Operations of commands issued through AMAPI (`enterprises.devices.operations.get`):
the scheduler's `amapi_operations` job settles what no COMMAND notification settled (a lost
notification, a subscription not yet made). A pending Operation stays pending; done with `error`
is the command's failure (mdm.services.amapi.command_map.operation_outcome)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from commands.context import CommandContext
from mdm.ground import clock
from mdm.ground.db import transaction
from mdm.ground.models import AmapiCommandSend
from mdm.services.amapi.commands import settle_operation
from mdm.services.amapi.sending import AmapiCaller

log = logging.getLogger(__name__)

# An operation is asked about at most this often (the device may be off for days).
POLL_EVERY = timedelta(minutes=1)
# Operations asked about per run: bounded, oldest poll first.
POLL_BATCH = 100


def operations_to_poll(session: Session, *, limit: int = POLL_BATCH) -> list[tuple[int, str]]:
    """(command id, operation name) of issued, unsettled operations not asked about lately."""
    due = clock.now() - POLL_EVERY
    rows = session.execute(
        select(AmapiCommandSend.command_id, AmapiCommandSend.operation_name)
        .where(
            AmapiCommandSend.operation_name.is_not(None),
            AmapiCommandSend.done_at.is_(None),
            (AmapiCommandSend.polled_at.is_(None)) | (AmapiCommandSend.polled_at < due),
        )
        .order_by(
            AmapiCommandSend.polled_at.is_not(None), AmapiCommandSend.polled_at, AmapiCommandSend.command_id
        )
        .limit(limit)
    )
    return [(command_id, name) for command_id, name in rows if name]


def settle_by_operation(session: Session, operation: dict[str, Any], context: CommandContext) -> bool | None:
    """A COMMAND notification's (or a poll's) Operation, settled on the command it belongs to.
    None when Hikeshi issued no such operation."""
    name = operation.get("name")
    if not isinstance(name, str):
        return None
    send = session.scalars(select(AmapiCommandSend).where(AmapiCommandSend.operation_name == name)).first()
    if send is None:
        return None
    return settle_operation(session, send, operation, context)


def poll_operations(
    factory: sessionmaker[Session], client: AmapiCaller, context: CommandContext, *, limit: int = POLL_BATCH
) -> dict[str, int]:
    """Ask Google about each unsettled operation; settle those done. Each in its own transaction."""
    with transaction(factory) as session:
        due = operations_to_poll(session, limit=limit)
    polled = settled = failed = 0
    for command_id, name in due:
        try:
            operation = client.call("GET", name)
        except Exception as exc:
            failed += 1
            log.warning("AMAPI operation %s could not be polled: %s", name, exc)
            with transaction(factory) as session:
                send = session.get(AmapiCommandSend, command_id)
                if send is not None:
                    send.polled_at = clock.now()
                    send.last_error = f"poll: {type(exc).__name__}: {exc}"[:255]
            continue
        polled += 1
        with transaction(factory) as session:
            send = session.get(AmapiCommandSend, command_id)
            if send is not None and settle_operation(session, send, operation, context):
                settled += 1
    return {"polled": polled, "settled": settled, "poll_failures": failed}
