"""What the hotline does with devices' answers: lock confirmed, location fixes, wipe confirmed.

Called by the commands whose results these are (commands.kinds.device_lock, enable_lost_mode,
device_location, erase_device)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.incidents.lock_state import lock_view
from commands.incidents.steps import LOCK_PURPOSE, mark_locked, record_step
from commands.incidents.wipe_identity import identity_mismatch, refuse_certificate
from commands.wipe_certificate import issue_wipe_certificate, record_wipe_certificate
from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.config import Settings
from mdm.ground.models import Command, CommandStatus, EnrollmentState
from mdm.ground.models.incident import (
    Incident,
    IncidentCommand,
    IncidentLocation,
    IncidentStatus,
    WipeCertificate,
)
from mdm.services import orgunits

log = logging.getLogger(__name__)


def _link(session: Session, command: Command) -> IncidentCommand | None:
    return session.scalars(select(IncidentCommand).where(IncidentCommand.command_id == command.id)).first()


def _device_actor(incident: Incident) -> Actor:
    return Actor(f"device:{incident.device.udid}", "device")


def lock_answered(session: Session, command: Command) -> None:
    """DeviceLock or EnableLostMode answered: the incident is locked, or it says why not."""
    link = _link(session, command)
    if link is None or link.purpose != LOCK_PURPOSE:
        return
    incident = link.incident
    view = lock_view(command)
    if view.held:
        mark_locked(session, incident, command)
    elif command.status == CommandStatus.ACKNOWLEDGED:
        # Acknowledged, but the message did not show (no passcode) or the device could not say:
        # the tablet is not locked in any sense an operator can rely on.
        record_step(
            session,
            incident,
            _device_actor(incident),
            "lock_not_displayed",
            {
                "command_uuid": command.uuid,
                "request_type": command.request_type,
                "message_result": command.message_result,
                "lock_state": view.state,
                "next_step": view.next_step_en,
            },
            flagged=True,
        )
    else:
        record_step(
            session,
            incident,
            _device_actor(incident),
            "lock_failed",
            {"command_uuid": command.uuid},
            flagged=True,
        )


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _fix_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def location_answered(session: Session, command: Command, report: dict[str, Any]) -> None:
    """DeviceLocation answered: the fix lands on the incident (an unusable one says so)."""
    link = _link(session, command)
    if link is None or command.status != CommandStatus.ACKNOWLEDGED:
        return
    incident = link.incident
    latitude, longitude = _float(report.get("Latitude")), _float(report.get("Longitude"))
    if latitude is None or longitude is None or not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        record_step(
            session, incident, _device_actor(incident), "location_unusable", {"command_uuid": command.uuid}
        )
        return
    now = clock.now()
    accuracy = _float(report.get("HorizontalAccuracy"))
    located_at = _fix_time(report.get("Timestamp")) or now
    session.add(
        IncidentLocation(
            incident_id=incident.id,
            command_id=command.id,
            latitude=latitude,
            longitude=longitude,
            horizontal_accuracy=accuracy,
            located_at=located_at,
            received_at=now,
        )
    )
    if incident.located_at is None or located_at >= incident.located_at:
        incident.latitude, incident.longitude = latitude, longitude
        incident.location_accuracy, incident.located_at = accuracy, located_at
    record_step(
        session,
        incident,
        _device_actor(incident),
        "location_received",
        {
            "latitude": latitude,
            "longitude": longitude,
            "accuracy": accuracy,
            "located_at": located_at.isoformat(),
        },
    )


def erase_answered(session: Session, command: Command, settings: Settings | None) -> None:
    """EraseDevice answered: the wipe certificate is fixed (and signed when `settings` are given)
    and the device retired; a failure or an unapproved identity is flagged instead."""
    incident = session.scalars(select(Incident).where(Incident.erase_command_id == command.id)).first()
    if incident is None:
        return
    actor = _device_actor(incident)
    if command.status != CommandStatus.ACKNOWLEDGED:
        record_step(
            session,
            incident,
            actor,
            "wipe_failed",
            {"command_uuid": command.uuid, "error_chain": command.error_chain},
            flagged=True,
        )
        return
    mismatch = identity_mismatch(session, incident, command)
    if mismatch is not None:
        refuse_certificate(session, incident, command, mismatch, actor)
        return
    incident.status = IncidentStatus.WIPED
    incident.wiped_at = command.acknowledged_at
    unit = incident.device.org_unit
    unit_path = orgunits.path_label(session, unit) if unit is not None else None
    certificate = record_wipe_certificate(session, incident, command, unit_path)
    _sign(session, settings, certificate, actor)
    record_step(
        session, incident, actor, "wiped", {"command_uuid": command.uuid, "certificate_id": certificate.id}
    )
    _retire(session, incident, actor)


def _sign(session: Session, settings: Settings | None, certificate: WipeCertificate, actor: Actor) -> None:
    """Sign now when the caller has the settings (the application's CommandContext). A signing
    failure must not lose the device's acknowledgement: the certificate then stays unsigned and is
    signed by the next caller holding the settings (export, console, scheduler)."""
    if settings is None:
        return
    try:
        with session.begin_nested():
            issue_wipe_certificate(session, settings, certificate, actor=actor)
    except Exception:
        log.exception("could not sign the wipe certificate of incident %s now", certificate.incident_id)


def _retire(session: Session, incident: Incident, actor: Actor) -> None:
    """A wiped device keeps its history but is out of service until it enrolls again."""
    device = incident.device
    device.enrollment_state = EnrollmentState.RETIRED
    device.unenrolled_at = clock.now()
    record_event(
        session, actor, "device.retired", "device", device.id, {"incident_id": incident.id, "reason": "wiped"}
    )
