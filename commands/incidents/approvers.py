"""Approvers are told when a wipe waits for them, and their queue is one query.

A wipe request raises a critical alert (kind `wipe_requested`): the alert channels that already
exist carry it (a delivery to every enabled webhook in the same transaction, and the alert e-mail
to the administrators' address when SMTP is configured). When someone decides (approve, reject,
break glass) or the tablet is recovered, the alert is acknowledged with what happened, so the
open alerts never show a request that no longer waits.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground.audit import Actor
from mdm.ground.models import Alert, Severity
from mdm.ground.models.incident import Incident, IncidentStatus
from mdm.services.alerts.service import acknowledge_alert, raise_alert

WIPE_REQUESTED_ALERT = "wipe_requested"


def person_label(name: str | None) -> str:
    """ "user:tanaka" → "tanaka": the person, not the kind of principal."""
    return (name or "").split(":", 1)[-1]


def tell_approvers(session: Session, incident: Incident, actor: Actor) -> Alert:
    device = incident.device
    name = device.device_name or device.serial_number or f"#{device.id}"
    tag = f" [{device.asset_tag}]" if getattr(device, "asset_tag", None) else ""
    who = person_label(actor.name)
    return raise_alert(
        session,
        WIPE_REQUESTED_ALERT,
        Severity.CRITICAL,
        f"消去の承認待ち: {name}{tag} (事案 {incident.id}、申請者 {who}) / "
        f"Wipe awaiting approval: {name}{tag} (incident {incident.id}, requested by {who})",
        device=device,
        org_unit_id=incident.org_unit_id,
        details={
            "incident_id": incident.id,
            "requested_by": actor.name,
            "reason": incident.wipe_request_reason,
        },
    )


def settle_approver_alerts(session: Session, incident: Incident, actor: Actor, outcome: str) -> int:
    """Acknowledge the incident's open wipe-request alerts with `outcome`; how many there were."""
    rows = session.scalars(
        select(Alert).where(
            Alert.kind == WIPE_REQUESTED_ALERT,
            Alert.acknowledged_at.is_(None),
            Alert.device_id == incident.device_id,
        )
    ).all()
    settled = 0
    for alert in rows:
        if (alert.details or {}).get("incident_id") == incident.id:
            acknowledge_alert(session, alert, actor, outcome)
            settled += 1
    return settled


def pending_wipe_requests(session: Session, scope: frozenset[int] | None) -> list[Incident]:
    """Wipe requests waiting for a second person, oldest first, inside `scope` (None: all)."""
    stmt = (
        select(Incident)
        .where(Incident.status == IncidentStatus.WIPE_REQUESTED)
        .order_by(Incident.wipe_requested_at, Incident.id)
    )
    if scope is not None:
        stmt = stmt.where(Incident.org_unit_id.in_(sorted(scope)))
    return list(session.scalars(stmt))
