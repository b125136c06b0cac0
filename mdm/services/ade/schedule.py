"""The scheduled sync: due every HIKESHI_ADE_SYNC_MINUTES, with the token's expiry alert.

Its own boundary: the sync runs in one transaction; a failure rolls it back and records its
reason on the token in a second one (shown by the console, `hikeshi ade status` and doctor).
No transaction stays open across the service's answers longer than the sync itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground import clock
from mdm.ground.audit import SYSTEM
from mdm.ground.config import Settings
from mdm.ground.db import transaction
from mdm.ground.models import Alert, Severity
from mdm.services.ade.client import DepError
from mdm.services.ade.server_token import EXPIRY_WARNING, active_server_token
from mdm.services.ade.sync import NoServerToken, client_for, record_failure, sync
from mdm.services.alerts.service import raise_alert

TIMEOUT_SECONDS = 30.0


def run_sync(
    factory: sessionmaker[Session], settings: Settings, *, sleep: Callable[[float], None] | None = None
) -> dict[str, Any]:
    """One sync now, committed; a failure is recorded and re-raised as DepError/NoServerToken."""
    options: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
    try:
        with httpx.Client(timeout=TIMEOUT_SECONDS) as http, transaction(factory) as session:
            report = sync(session, settings, client_for(session, settings, http, **options), actor=SYSTEM)
    except DepError as exc:
        with transaction(factory) as session:
            record_failure(session, exc)
        raise
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
        alerted = _token_expiry_alert(session)
        due = token.last_sync_at is None or clock.now() - token.last_sync_at >= timedelta(
            minutes=settings.ade_sync_minutes
        )
    if not due:
        return {"configured": True, "due": False, "expiry_alert": alerted}
    try:
        return {"configured": True, "due": True, "expiry_alert": alerted, **run_sync(factory, settings)}
    except NoServerToken:
        return {"configured": False}


def _token_expiry_alert(session: Session) -> bool:
    """One alert per token entering its last 30 days, as for the push certificate."""
    token = active_server_token(session)
    if token is None or token.access_token_expiry - clock.now() > EXPIRY_WARNING:
        return False
    marker = token.access_token_expiry.isoformat()
    for alert in session.scalars(select(Alert).where(Alert.kind == "ade.token_expiring")):
        if alert.details.get("access_token_expiry") == marker:
            return False
    left = (token.access_token_expiry - clock.now()).days
    raise_alert(
        session,
        "ade.token_expiring",
        Severity.CRITICAL if left <= 7 else Severity.WARNING,
        f"ABM server token expires in {left} days ({token.access_token_expiry:%Y-%m-%d})",
        details={"access_token_expiry": marker, "days_left": left},
    )
    return True
