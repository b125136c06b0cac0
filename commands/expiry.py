"""How long an undelivered command waits: HIKESHI_COMMAND_EXPIRY_DAYS, from the CommandContext.

Commands whose class says they never expire (lock, lost mode, wipe) ignore it.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from commands.context import FALLBACK_EXPIRY, context_of

__all__ = ["FALLBACK_EXPIRY", "configured_expiry"]


def configured_expiry(session: Session) -> timedelta:
    """The lifetime the session's CommandContext was built with (the default without one)."""
    return context_of(session).command_expiry
