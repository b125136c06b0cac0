"""An APNs outage longer than a threshold is an alert (webhooks, e-mail); its end closes it.

Read from the committed APNs health row (mdm.ground.health), so it sees what every worker recorded,
and it runs in the scheduler, so one node raises it once.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import SYSTEM
from mdm.ground.health import service_health
from mdm.ground.models import Alert, Severity
from mdm.services.alerts.service import acknowledge_alert, raise_alert

OUTAGE = "apns.outage"
RECOVERED = "apns.recovered"


def check_apns_outage(session: Session, threshold: timedelta) -> str | None:
    """ "raised" when an outage passed the threshold, "closed" when a raised one ended, else None."""
    health = service_health(session, "apns")
    latest = session.scalars(
        select(Alert).where(Alert.kind == OUTAGE).order_by(Alert.id.desc()).limit(1)
    ).first()
    ongoing = latest is not None and "ended_at" not in latest.details
    now = clock.now()
    if health is not None and not health.healthy:
        if ongoing or now - health.since < threshold:
            return None
        minutes = int((now - health.since).total_seconds() // 60)
        raise_alert(
            session,
            OUTAGE,
            Severity.CRITICAL,
            f"APNs unreachable for {minutes} minutes: devices are not woken (commands wait for a check-in)",
            details={"since": health.since.isoformat(), "detail": health.detail},
        )
        return "raised"
    if not ongoing or health is None:
        return None
    assert latest is not None
    latest.details = {**latest.details, "ended_at": health.since.isoformat()}
    if latest.acknowledged_at is None:
        acknowledge_alert(session, latest, SYSTEM, f"APNs answered again at {health.since.isoformat()}")
    raise_alert(
        session,
        RECOVERED,
        Severity.INFO,
        "APNs answers again: waiting wake-ups are being sent",
        details={
            "outage_alert_id": latest.id,
            "since": latest.details.get("since"),
            "ended_at": health.since.isoformat(),
        },
    )
    return "closed"
