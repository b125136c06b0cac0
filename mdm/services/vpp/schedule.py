"""The scheduled Apps and Books work: pending events polled at every run, the location and its
assets synced every HIKESHI_VPP_SYNC_MINUTES, one alert per token entering its last 30 days.

Its own boundary: a sync runs in one transaction; a failure rolls it back and records its reason
on the token in a second one (shown by the console, `hikeshi vpp status` and doctor).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground import clock
from mdm.ground.config import Settings
from mdm.ground.db import transaction
from mdm.ground.models import Alert, Severity, VppEvent
from mdm.services.alerts.service import raise_alert
from mdm.services.vpp.client import VppError
from mdm.services.vpp.sync import NoVppToken, OtherMdm, client_for, poll_events, record_failure, sync
from mdm.services.vpp.token import EXPIRY_WARNING, active_token

TIMEOUT_SECONDS = 30.0


def run_sync(
    factory: sessionmaker[Session], settings: Settings, *, sleep: Callable[[float], None] | None = None
) -> dict[str, Any]:
    """One full sync now, committed; a failure is recorded and re-raised."""
    options: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
    try:
        with httpx.Client(timeout=TIMEOUT_SECONDS) as http, transaction(factory) as session:
            report = sync(session, client_for(session, settings, http, **options), settings)
    except VppError as exc:
        with transaction(factory) as session:
            record_failure(session, exc)
            if isinstance(exc, OtherMdm):
                other_mdm_alert(session, str(exc))
        raise
    return {
        "location": report.location,
        "location_changed": report.location_changed,
        "assets": report.assets,
        "pages": report.pages,
        "removed": report.removed,
        "events_checked": report.events_checked,
        "events_completed": report.events_completed,
    }


def run_event_poll(factory: sessionmaker[Session], settings: Settings) -> dict[str, Any]:
    with transaction(factory) as session:
        waiting = session.scalar(
            select(func.count()).select_from(VppEvent).where(VppEvent.status == "PENDING")
        )
    if not waiting:
        return {"events_checked": 0, "events_completed": 0}
    try:
        with httpx.Client(timeout=TIMEOUT_SECONDS) as http, transaction(factory) as session:
            checked, finished = poll_events(session, client_for(session, settings, http))
    except VppError as exc:
        with transaction(factory) as session:
            record_failure(session, exc)
        raise
    return {"events_checked": checked, "events_completed": finished}


def scheduled_sync(factory: sessionmaker[Session], settings: Settings) -> dict[str, Any]:
    with transaction(factory) as session:
        token = active_token(session)
        if token is None:
            return {"configured": False}
        alerted = token_expiry_alert(session)
        if token.expires_at <= clock.now():
            # The service refuses an expired token: asking would only record the same error.
            return {"configured": True, "expired": True, "expiry_alert": alerted}
        due = token.last_sync_at is None or clock.now() - token.last_sync_at >= timedelta(
            minutes=settings.vpp_sync_minutes
        )
    try:
        if due:
            return {"configured": True, "due": True, "expiry_alert": alerted, **run_sync(factory, settings)}
        return {
            "configured": True,
            "due": False,
            "expiry_alert": alerted,
            **run_event_poll(factory, settings),
        }
    except NoVppToken:
        return {"configured": False}


def token_expiry_alert(session: Session) -> bool:
    """One alert per token entering its last 30 days, as for the ABM server token."""
    token = active_token(session)
    if token is None or token.expires_at - clock.now() > EXPIRY_WARNING:
        return False
    marker = token.expires_at.isoformat()
    for alert in session.scalars(select(Alert).where(Alert.kind == "vpp.token_expiring")):
        if alert.details.get("expires_at") == marker:
            return False
    left = (token.expires_at - clock.now()).days
    raise_alert(
        session,
        "vpp.token_expiring",
        Severity.CRITICAL if left <= 7 else Severity.WARNING,
        f"Apps and Books content token expires in {left} days ({token.expires_at:%Y-%m-%d})",
        details={"expires_at": marker, "days_left": left},
    )
    return True


def other_mdm_alert(session: Session, reason: str) -> None:
    """One open alert while another MDM holds the token (not one a sync)."""
    for alert in session.scalars(select(Alert).where(Alert.kind == "vpp.other_mdm")):
        if alert.details.get("reason") == reason:
            return
    raise_alert(session, "vpp.other_mdm", Severity.CRITICAL, reason, details={"reason": reason})
