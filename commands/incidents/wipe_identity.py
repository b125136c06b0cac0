"""Whose acknowledgement earns a wipe certificate: only an identity the tablet had when the wipe
was approved (commands.incidents.service.send_erase records them on the incident). A device that
re-enrolled (or was taken over) in between answers with another certificate, and the server
cannot then claim that the tablet the approvers meant was erased (issue 13).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.incidents.steps import record_step
from mdm.ground.audit import Actor
from mdm.ground.models import AmapiDevice, Command, CommandResult, Device, Severity
from mdm.ground.models.amapi_ops import amapi_identity
from mdm.ground.models.incident import Incident
from mdm.services.alerts.service import raise_alert

MISMATCH_ALERT = "incident.wipe_identity_mismatch"
MISMATCH_STEP = "wipe_identity_mismatch"


def approved_identities(session: Session, device: Device, certificates: list[str]) -> list[str]:
    """The identities whose answer may earn the wipe certificate: the device's bound certificates,
    and for a tablet managed through the Android Management API its AMAPI device (the wipe is
    sent to that name, and its answer is recorded under it: mdm.services.amapi)."""
    name = session.scalars(select(AmapiDevice.amapi_name).where(AmapiDevice.device_id == device.id)).first()
    return [*certificates, amapi_identity(name)] if name else certificates


def acknowledging_identity(session: Session, command: Command) -> str | None:
    """The certificate the device signed its newest report on this command with (None: unknown)."""
    return session.scalars(
        select(CommandResult.certificate_fingerprint)
        .where(CommandResult.command_id == command.id)
        .order_by(CommandResult.id.desc())
        .limit(1)
    ).first()


def identity_mismatch(session: Session, incident: Incident, command: Command) -> str | None:
    """Why this acknowledgement cannot be certified, or None when it came from an approved identity.

    Incidents approved before identities were recorded (wipe_identities None) keep the old rule.
    """
    if incident.wipe_identities is None:
        return None
    presented = acknowledging_identity(session, command)
    if presented is None:
        return "the acknowledging certificate is unknown"
    if presented not in incident.wipe_identities:
        return "acknowledged by a certificate that was not the device's identity when the wipe was approved"
    return None


def refuse_certificate(
    session: Session, incident: Incident, command: Command, reason: str, actor: Actor
) -> None:
    """No certificate: the incident's timeline says why (in red) and administrators are alerted."""
    presented = acknowledging_identity(session, command)
    details = {
        "command_uuid": command.uuid,
        "reason": reason,
        "acknowledged_by_certificate": presented,
        "approved_certificates": incident.wipe_identities,
    }
    record_step(session, incident, actor, MISMATCH_STEP, details, flagged=True)
    device = incident.device
    name = device.device_name or device.serial_number or f"device {device.id}"
    raise_alert(
        session,
        MISMATCH_ALERT,
        Severity.CRITICAL,
        f"消去完了証明書を発行できません: {name} の消去応答が承認時と異なる証明書から届きました "
        f"(事案 {incident.id}) / No wipe certificate for {name}: the EraseDevice acknowledgement "
        f"came from a certificate other than the approved identity (incident {incident.id})",
        device=device,
        org_unit_id=incident.org_unit_id,
        details={"incident_id": incident.id, **details},
    )
