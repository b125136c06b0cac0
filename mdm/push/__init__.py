"""Push wake-ups. Services ask for a push with `request_push`; it leaves only after commit.

Invariant 1 of DESIGN.md: a command is written to the database before any push, and a failed
push never rolls it back. So a push request rides on the session and is handed to the
dispatcher by an after-commit hook; a rollback drops it with the commands it was for.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

PENDING_PUSHES = "hikeshi.pending_pushes"


def request_push(session: Session, device_id: int) -> None:
    session.info.setdefault(PENDING_PUSHES, set()).add(device_id)


def take_pending_pushes(session: Session) -> set[int]:
    return session.info.pop(PENDING_PUSHES, set())
