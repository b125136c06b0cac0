"""Recording and reading the health of APNs and the scheduler (for /readyz and the console banner)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mdm import clock
from mdm.models.health import ServiceHealth


def mark_health(session: Session, name: str, healthy: bool, detail: str | None = None) -> ServiceHealth:
    """Record the state of a service; `since` moves only when the state changes."""
    now = clock.now()
    detail = (detail or None) and detail[:255]
    row = session.get(ServiceHealth, name)
    if row is None:
        row = ServiceHealth(name=name, healthy=healthy, since=now, detail=detail, updated_at=now)
        session.add(row)
        return row
    if row.healthy != healthy:
        row.since = now
    row.healthy = healthy
    row.detail = detail
    row.updated_at = now
    return row


def service_health(session: Session, name: str) -> ServiceHealth | None:
    return session.get(ServiceHealth, name)
