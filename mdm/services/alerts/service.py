"""Raising and acknowledging alerts. Raising one queues a delivery to every enabled webhook in
the same transaction, so an alert is never stored without its deliveries or the other way round."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import Alert, DeliveryStatus, Device, Webhook, WebhookDelivery


class AlertStateError(ValueError):
    pass


def alert_payload(alert: Alert, device: Device | None) -> dict[str, Any]:
    return {
        "alert_id": alert.id,
        "kind": alert.kind,
        "severity": alert.severity,
        "title": alert.title,
        "created_at": alert.created_at.isoformat(),
        "org_unit_id": alert.org_unit_id,
        "device": None
        if device is None
        else {
            "id": device.id,
            "udid": device.udid,
            "serial_number": device.serial_number,
            "name": device.device_name,
        },
        "details": alert.details,
    }


@dataclass(frozen=True)
class AlertSpec:
    """One alert of `raise_alerts`: what `raise_alert` takes, as a value."""

    kind: str
    severity: str
    title: str
    device: Device | None = None
    finding_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


def raise_alerts(session: Session, specs: list[AlertSpec]) -> list[Alert]:
    """Raise many alerts at once (a fleet check's page): the alerts in one flush and their webhook
    deliveries in another, the webhooks read once; the same rows as `raise_alert` one by one."""
    if not specs:
        return []
    now = clock.now()
    alerts = [
        Alert(
            kind=spec.kind,
            severity=spec.severity,
            title=spec.title[:255],
            device_id=spec.device.id if spec.device else None,
            org_unit_id=spec.device.org_unit_id if spec.device else None,
            finding_id=spec.finding_id,
            details=spec.details,
            created_at=now,
        )
        for spec in specs
    ]
    session.add_all(alerts)
    session.flush()  # one batched INSERT (insertmanyvalues) gives every alert its id
    webhooks = _enabled_webhooks(session)
    if webhooks:
        for alert, spec in zip(alerts, specs, strict=True):
            session.add_all(_deliveries(webhooks, alert, spec.device, now))
    return alerts


def raise_alert(
    session: Session,
    kind: str,
    severity: str,
    title: str,
    *,
    device: Device | None = None,
    org_unit_id: int | None = None,
    finding_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> Alert:
    now = clock.now()
    alert = Alert(
        kind=kind,
        severity=severity,
        title=title[:255],
        device_id=device.id if device else None,
        org_unit_id=org_unit_id if org_unit_id is not None else (device.org_unit_id if device else None),
        finding_id=finding_id,
        details=details or {},
        created_at=now,
    )
    session.add(alert)
    session.flush()
    session.add_all(_deliveries(_enabled_webhooks(session), alert, device, now))
    return alert


def _enabled_webhooks(session: Session) -> list[Webhook]:
    return list(session.scalars(select(Webhook).where(Webhook.enabled.is_(True))))


def _deliveries(
    webhooks: list[Webhook], alert: Alert, device: Device | None, now: datetime
) -> list[WebhookDelivery]:
    """One pending delivery of the alert to each enabled webhook, all with the same body."""
    if not webhooks:
        return []
    body = json.dumps(alert_payload(alert, device), ensure_ascii=False, sort_keys=True).encode()
    return [
        WebhookDelivery(
            webhook_id=webhook.id,
            alert_id=alert.id,
            body=body,
            status=DeliveryStatus.PENDING,
            next_attempt_at=now,
            created_at=now,
        )
        for webhook in webhooks
    ]


def acknowledge_alert(session: Session, alert: Alert, actor: Actor, comment: str = "") -> Alert:
    if alert.acknowledged_at is not None:
        raise AlertStateError(f"alert {alert.id} was already acknowledged by {alert.acknowledged_by}")
    alert.acknowledged_at = clock.now()
    alert.acknowledged_by = actor.name
    alert.acknowledge_comment = comment.strip() or None
    record_event(
        session, actor, "alert.acknowledged", "alert", alert.id, {"kind": alert.kind, "comment": comment}
    )
    return alert


def open_alert_count(session: Session, org_unit_ids: list[int] | None = None) -> int:
    """Unacknowledged alerts (dashboard count); restricted to units when given."""
    stmt = select(func.count()).select_from(Alert).where(Alert.acknowledged_at.is_(None))
    if org_unit_ids is not None:
        stmt = stmt.where(Alert.org_unit_id.in_(org_unit_ids))
    return session.scalar(stmt) or 0


def device_alerts(session: Session, device_id: int, *, limit: int = 100) -> list[Alert]:
    return list(
        session.scalars(
            select(Alert).where(Alert.device_id == device_id).order_by(Alert.id.desc()).limit(limit)
        )
    )


def recent_alerts(session: Session, *, unacknowledged_only: bool = False, limit: int = 100) -> list[Alert]:
    stmt = select(Alert).order_by(Alert.id.desc()).limit(limit)
    if unacknowledged_only:
        stmt = stmt.where(Alert.acknowledged_at.is_(None))
    return list(session.scalars(stmt))
