"""How long an undelivered command waits: HIKESHI_COMMAND_EXPIRY_DAYS, carried by every session.

The queue has no settings of its own (services take only a Session), so the composition roots
(app, CLI, scheduler) put the configured lifetime into the session factory's `info`, as they do
for the wipe-certificate signer. Commands whose catalog entry says they never expire (lock,
lost mode, wipe) ignore it.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from mdm.ground.config import Settings

COMMAND_EXPIRY = "hikeshi.command_expiry"
# The default of HIKESHI_COMMAND_EXPIRY_DAYS, for a session built without the settings (tests).
FALLBACK_EXPIRY = timedelta(days=Settings.command_expiry_days)


def configure_command_expiry(factory: sessionmaker[Session], settings: Settings) -> None:
    """Let every session of `factory` carry the configured command lifetime."""
    info = dict(factory.kw.get("info") or {})
    info[COMMAND_EXPIRY] = timedelta(days=settings.command_expiry_days)
    factory.configure(info=info)


def configured_expiry(session: Session) -> timedelta:
    value = session.info.get(COMMAND_EXPIRY)
    return value if isinstance(value, timedelta) else FALLBACK_EXPIRY
