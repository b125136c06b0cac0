"""Recording and reading the health of APNs and the scheduler (for /readyz and the console banner)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.db import insert_if_absent
from mdm.ground.models.health import ServiceHealth


def mark_health(session: Session, name: str, healthy: bool, detail: str | None = None) -> ServiceHealth:
    """Record the state of a service; `since` moves only when the state changes."""
    now = clock.now()
    detail = (detail or None) and detail[:255]
    row = session.get(ServiceHealth, name)
    if row is None:
        # Two workers may record the first state at once: the loser updates the winner's row.
        values = {"name": name, "healthy": healthy, "since": now, "detail": detail, "updated_at": now}
        insert_if_absent(session, ServiceHealth, values)
        row = session.get(ServiceHealth, name, with_for_update=True, populate_existing=True)
        assert row is not None
    if row.healthy != healthy:
        row.since = now
    row.healthy = healthy
    row.detail = detail
    row.updated_at = now
    return row


def service_health(session: Session, name: str) -> ServiceHealth | None:
    return session.get(ServiceHealth, name)


def record_apns_health(session: Session, healthy: bool, detail: str) -> None:
    """Record what the latest committed push batch showed, writing only when it changes.

    Called in its own short transaction after the push results are committed, so the state never
    runs ahead of them (a rolled-back batch leaves no trace here) and no worker keeps a copy that
    could disagree with the row.
    """
    row = session.get(ServiceHealth, "apns", with_for_update=True)
    if row is not None and row.healthy == healthy and row.detail == detail[:255]:
        return
    mark_health(session, "apns", healthy, detail)
