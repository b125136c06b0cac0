"""Push wake-ups. Services ask for a push with `request_push`; it leaves only after commit.

Invariant 1 of DESIGN.md: a command is written to the database before any push, and a failed
push never rolls it back. The request is itself written in the same transaction (an outbox row,
mdm.ground.push.outbox), so a wake-up is never lost with a process: the after-commit hook hands it to
this process's dispatcher at once, and the scheduler's drain job takes whatever is left over
(a worker killed, a reload, an APNs outage). A rollback drops the request with its commands.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mdm.ground.models.outbox import OutboxTopic
from mdm.ground.push import outbox

PENDING_PUSHES = "hikeshi.pending_pushes"


def request_push(session: Session, device_id: int) -> None:
    request_pushes(session, [device_id])


def request_pushes(session: Session, device_ids: list[int] | set[int]) -> None:
    """Ask for a wake-up of these devices, durably, in the caller's transaction."""
    if not device_ids:
        return
    outbox.request(session, OutboxTopic.WAKE_DEVICE, device_ids)
    session.info.setdefault(PENDING_PUSHES, set()).update(device_ids)


def take_pending_pushes(session: Session) -> set[int]:
    return session.info.pop(PENDING_PUSHES, set())
