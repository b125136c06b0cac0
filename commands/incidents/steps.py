"""An incident's timeline: one step and its audit event, in the same transaction.

Below the hotline's service (which queues commands) so that what a device's answer does
(commands.incidents.results) can write steps without reaching the queue.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from commands.incidents.lock_state import state_of
from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import Command
from mdm.ground.models.incident import Incident, IncidentStatus, IncidentStep

# IncidentCommand.purpose of the commands the hotline sends for a lock and a wipe.
LOCK_PURPOSE = "lock"
ERASE_PURPOSE = "erase"


def record_step(
    session: Session,
    incident: Incident,
    actor: Actor,
    action: str,
    details: dict[str, Any] | None = None,
    *,
    flagged: bool = False,
) -> IncidentStep:
    """One timeline step and its audit event (action "incident.<action>"), same transaction."""
    details = dict(details or {})
    step = IncidentStep(
        incident_id=incident.id,
        action=action,
        actor=actor.name,
        actor_role=actor.role,
        occurred_at=clock.now(),
        details=details,
        flagged=flagged,
    )
    session.add(step)
    audit_details = {"device_id": incident.device_id, "status": incident.status, **details}
    if flagged:
        audit_details["flagged"] = True
    record_event(session, actor, f"incident.{action}", "incident", incident.id, audit_details)
    return step


def mark_locked(session: Session, incident: Incident, command: Command) -> None:
    """The device confirmed the lock (result handler)."""
    if incident.status == IncidentStatus.OPEN:
        incident.status = IncidentStatus.LOCKED
    incident.locked_at = incident.locked_at or command.acknowledged_at or clock.now()
    record_step(
        session,
        incident,
        Actor(f"device:{incident.device.udid}", "device"),
        "lock_confirmed",
        {
            "command_uuid": command.uuid,
            "request_type": command.request_type,
            "message_result": command.message_result,
            "lock_state": state_of(command),
        },
    )
