"""The scheduled Apps and Books work: pending events polled at every run, the location and its
assets synced every HIKESHI_VPP_SYNC_MINUTES, one alert per token entering its last 30 days.

Its own boundary: a sync runs in one transaction; a failure rolls it back and records its reason
on the token in a second one (shown by the console, `hikeshi vpp status` and doctor).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground import clock
from mdm.ground.config import Settings
from mdm.ground.db import transaction
from mdm.ground.models import Alert, Severity, VppEvent
from mdm.services.alerts.service import raise_alert
from mdm.services.token_schedule import expiry_alert, is_due, run_recorded
from mdm.services.vpp.client import VppError
from mdm.services.vpp.sync import NoVppToken, OtherMdm, client_for, poll_events, record_failure, sync
from mdm.services.vpp.token import active_token


def run_sync(
    factory: sessionmaker[Session], settings: Settings, *, sleep: Callable[[float], None] | None = None
) -> dict[str, Any]:
    """One full sync now, committed; a failure is recorded and re-raised."""
    options: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
    report = run_recorded(
        factory,
        lambda session, http: sync(session, client_for(session, settings, http, **options), settings),
        VppError,
        _record_failure,
    )
    return {
        "location": report.location,
        "location_changed": report.location_changed,
        "assets": report.assets,
        "pages": report.pages,
        "removed": report.removed,
        "events_checked": report.events_checked,
        "events_completed": report.events_completed,
    }


def _record_failure(session: Session, exc: VppError) -> None:
    """The reason on the token; another MDM holding the token is also an alert (it needs a person)."""
    record_failure(session, exc)
    if isinstance(exc, OtherMdm):
        other_mdm_alert(session, str(exc))


def run_event_poll(factory: sessionmaker[Session], settings: Settings) -> dict[str, Any]:
    with transaction(factory) as session:
        waiting = session.scalar(
            select(func.count()).select_from(VppEvent).where(VppEvent.status == "PENDING")
        )
    if not waiting:
        return {"events_checked": 0, "events_completed": 0}
    checked, finished = run_recorded(
        factory,
        lambda session, http: poll_events(session, client_for(session, settings, http)),
        VppError,
        record_failure,
    )
    return {"events_checked": checked, "events_completed": finished}


def scheduled_sync(factory: sessionmaker[Session], settings: Settings) -> dict[str, Any]:
    with transaction(factory) as session:
        token = active_token(session)
        if token is None:
            return {"configured": False}
        alerted = expiry_alert(
            session, "vpp.token_expiring", token.expires_at, "expires_at", "Apps and Books content token"
        )
        if token.expires_at <= clock.now():
            # The service refuses an expired token: asking would only record the same error.
            return {"configured": True, "expired": True, "expiry_alert": alerted}
        due = is_due(token.last_sync_at, settings.vpp_sync_minutes)
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


def other_mdm_alert(session: Session, reason: str) -> None:
    """One open alert while another MDM holds the token (not one a sync)."""
    for alert in session.scalars(select(Alert).where(Alert.kind == "vpp.other_mdm")):
        if alert.details.get("reason") == reason:
            return
    raise_alert(session, "vpp.other_mdm", Severity.CRITICAL, reason, details={"reason": reason})
