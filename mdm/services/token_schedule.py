"""What the scheduled syncs with Apple's token services (ADE, Apps and Books) share: when one is
due, its failure recorded outside the rolled-back sync, and one alert per token entering its last
30 days.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground import clock
from mdm.ground.db import transaction
from mdm.ground.models import Alert, Severity
from mdm.ground.token_expiry import EXPIRY_WARNING
from mdm.services.alerts.service import raise_alert

TIMEOUT_SECONDS = 30.0

T = TypeVar("T")
E = TypeVar("E", bound=Exception)


def is_due(last_sync_at: datetime | None, minutes: int) -> bool:
    return last_sync_at is None or clock.now() - last_sync_at >= timedelta(minutes=minutes)


def run_recorded(
    factory: sessionmaker[Session],
    work: Callable[[Session, httpx.Client], T],
    error: type[E],
    record: Callable[[Session, E], None],
) -> T:
    """`work` in one transaction; its `error` rolls it back, is recorded by `record` in a second
    one (so the console and doctor see why) and re-raised."""
    try:
        with httpx.Client(timeout=TIMEOUT_SECONDS) as http, transaction(factory) as session:
            result = work(session, http)
    except error as exc:
        with transaction(factory) as session:
            record(session, exc)
        raise
    return result


def expiry_alert(session: Session, kind: str, expires_at: datetime, marker_key: str, label: str) -> bool:
    """One alert `kind` per token (told apart by its expiry under `marker_key`) in its last 30 days."""
    if expires_at - clock.now() > EXPIRY_WARNING:
        return False
    marker = expires_at.isoformat()
    for alert in session.scalars(select(Alert).where(Alert.kind == kind)):
        if alert.details.get(marker_key) == marker:
            return False
    left = (expires_at - clock.now()).days
    raise_alert(
        session,
        kind,
        Severity.CRITICAL if left <= 7 else Severity.WARNING,
        f"{label} expires in {left} days ({expires_at:%Y-%m-%d})",
        details={marker_key: marker, "days_left": left},
    )
    return True
