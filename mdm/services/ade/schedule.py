"""The scheduled sync: due every HIKESHI_ADE_SYNC_MINUTES, with the token's expiry alert.

Its own boundary: the sync runs in one transaction; a failure rolls it back and records its
reason on the token in a second one (shown by the console, `hikeshi ade status` and doctor).
No transaction stays open across the service's answers longer than the sync itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from mdm.ground.audit import SYSTEM
from mdm.ground.config import Settings
from mdm.ground.db import transaction
from mdm.services.ade.client import DepError
from mdm.services.ade.server_token import active_server_token
from mdm.services.ade.sync import NoServerToken, client_for, record_failure, sync
from mdm.services.token_schedule import expiry_alert, is_due, run_recorded


def run_sync(
    factory: sessionmaker[Session], settings: Settings, *, sleep: Callable[[float], None] | None = None
) -> dict[str, Any]:
    """One sync now, committed; a failure is recorded and re-raised as DepError/NoServerToken."""
    options: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
    report = run_recorded(
        factory,
        lambda session, http: sync(
            session, settings, client_for(session, settings, http, **options), actor=SYSTEM
        ),
        DepError,
        record_failure,
    )
    return {
        "full_fetch": report.full_fetch,
        "added": report.added,
        "modified": report.modified,
        "deleted": report.deleted,
        "profiles_defined": report.profiles_defined,
        "assigned": report.assigned,
        "assign_failures": len(report.assign_failures),
    }


def scheduled_sync(factory: sessionmaker[Session], settings: Settings) -> dict[str, Any]:
    with transaction(factory) as session:
        token = active_server_token(session)
        if token is None:
            return {"configured": False}
        alerted = expiry_alert(
            session,
            "ade.token_expiring",
            token.access_token_expiry,
            "access_token_expiry",
            "ABM server token",
        )
        due = is_due(token.last_sync_at, settings.ade_sync_minutes)
    if not due:
        return {"configured": True, "due": False, "expiry_alert": alerted}
    try:
        return {"configured": True, "due": True, "expiry_alert": alerted, **run_sync(factory, settings)}
    except NoServerToken:
        return {"configured": False}
