"""Periodic jobs for other services' housekeeping: identity renewals, stale enrollment
challenges, the audit trail's retention, and the units' incident auto-wipe policies.

Each is a boundary (owns its transaction) and idempotent: running it twice in a row does the
work once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.incidents import run_auto_wipe
from enrollment.renewal import queue_identity_renewals
from enrollment.tokens import purge_stale_challenges
from mdm.ground import clock
from mdm.ground.audit import SYSTEM, AuditChainBroken, purge_audit
from mdm.ground.db import transaction
from mdm.ground.models import Alert, Severity
from mdm.ground.models.incident import Incident
from mdm.services.alerts.service import raise_alert

if TYPE_CHECKING:
    from mdm.roots.scheduler.context import JobContext

REMINDER = "incident.auto_wipe_reminder"
AUTO_WIPED = "incident.auto_wiped"


def identity_renewal(ctx: JobContext) -> dict[str, Any]:
    """Queue an identity renewal for each device inside the renewal window (never two at once)."""
    with transaction(ctx.factory) as session:
        return {"queued": len(queue_identity_renewals(session, ctx.settings, SYSTEM, context=ctx.commands))}


def enrollment_challenge_purge(ctx: JobContext) -> dict[str, Any]:
    with transaction(ctx.factory) as session:
        return {"challenges": purge_stale_challenges(session)}


def audit_purge(ctx: JobContext) -> dict[str, Any]:
    """`hikeshi audit purge` on a schedule, keeping settings.audit_retention_days (0 keeps all)."""
    keep = ctx.settings.audit_retention_days
    if not keep:
        return {"enabled": False}
    try:
        with transaction(ctx.factory) as session:
            event = purge_audit(session, clock.now() - timedelta(days=keep), SYSTEM)
            purged = event.details["purged_events"] if event is not None else 0
    except AuditChainBroken as exc:
        # Nothing was purged, the evidence stays; someone must look. One alert per break.
        with transaction(ctx.factory) as session:
            _audit_chain_alert(session, exc)
        raise
    return {"enabled": True, "purged_events": purged}


def _audit_chain_alert(session: Session, exc: AuditChainBroken) -> None:
    broken = exc.report.broken_id
    for alert in session.scalars(select(Alert).where(Alert.kind == "audit.chain_broken")):
        if alert.details.get("broken_id") == broken:
            return
    raise_alert(
        session,
        "audit.chain_broken",
        Severity.CRITICAL,
        f"Audit trail does not verify at event id {broken}; the scheduled purge was refused",
        details={"broken_id": broken, "reason": exc.report.reason},
    )


def incident_auto_wipe(ctx: JobContext) -> dict[str, Any]:
    """Units' auto-wipe policies: remind before the deadline, wipe when it passes. Each is an
    alert, delivered like any other (console, webhooks, e-mail), so approvers hear of it."""
    with transaction(ctx.factory) as session:
        report = run_auto_wipe(session, context=ctx.commands)
        for kind, ids in ((REMINDER, report.reminded), (AUTO_WIPED, report.wiped)):
            for incident_id in ids:
                incident = session.get(Incident, incident_id)
                if incident is not None:
                    _incident_alert(session, incident, kind)
        return {"reminded": report.reminded, "wiped": report.wiped}


def _incident_alert(session: Session, incident: Incident, kind: str) -> None:
    device = incident.device
    name = device.device_name or device.serial_number or f"device {device.id}"
    if kind == REMINDER:
        severity = Severity.WARNING
        title = f"Auto-wipe of {name} is due soon (incident {incident.id}): recover it or decide now"
    else:
        severity = Severity.CRITICAL
        title = f"{name} is being wiped by its unit's auto-wipe policy (incident {incident.id})"
    raise_alert(
        session,
        kind,
        severity,
        title,
        device=device,
        org_unit_id=incident.org_unit_id,
        details={"incident_id": incident.id},
    )
