"""The escrowed bypass code: stored sealed, shown only to an administrator after a wipe.

The code is a credential (it clears Activation Lock on a tablet someone else's Apple ID locked):
it is sealed with the instance secret under its own purpose, never written to an audit event, a
log line or an API list, and unsealed only by `reveal_bypass_code`, which audits who saw it and
for which incident.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import Command, CommandStatus, Device, DeviceActivationLock, Incident
from mdm.ground.secretbox import seal, unseal

log = logging.getLogger(__name__)

BYPASS_CODE_PURPOSE = "activation-lock-bypass-code"


class RevealRefused(PermissionError):
    """The code is not shown: no wipe reached the device, or nothing is escrowed."""

    def __init__(self, message_ja: str, message_en: str) -> None:
        super().__init__(message_en)
        self.message_ja = message_ja


def activation_lock_row(session: Session, device: Device) -> DeviceActivationLock:
    row = session.get(DeviceActivationLock, device.id)
    if row is None:
        row = DeviceActivationLock(device_id=device.id)
        session.add(row)
    return row


def escrow_bypass_code(
    session: Session, device: Device, code: str, *, secret_key: str, command_uuid: str, actor: Actor
) -> None:
    """Keep `code` sealed; a newer answer replaces an older code (the tablet re-supervised after
    a wipe has a new one). Audited without the code."""
    row = activation_lock_row(session, device)
    replaced = row.bypass_code_sealed is not None
    row.bypass_code_sealed = seal(secret_key, BYPASS_CODE_PURPOSE, code.encode("ascii"))
    row.bypass_code_escrowed_at = clock.now()
    row.bypass_code_command_uuid = command_uuid
    row.bypass_code_unavailable_at = None
    record_event(
        session,
        actor,
        "activation_lock.bypass_code_escrowed",
        "device",
        device.id,
        {"command_uuid": command_uuid, "replaced_earlier_code": replaced},
    )


def note_no_bypass_code(
    session: Session, device: Device, *, command_uuid: str, reason: str, actor: Actor
) -> None:
    """The device answered without a usable code; an escrowed one (from before) is kept."""
    row = activation_lock_row(session, device)
    row.bypass_code_unavailable_at = clock.now()
    record_event(
        session,
        actor,
        "activation_lock.bypass_code_unavailable",
        "device",
        device.id,
        {
            "command_uuid": command_uuid,
            "reason": reason,
            "earlier_code_kept": row.bypass_code_sealed is not None,
        },
    )


def note_allowed_acknowledged(session: Session, device: Device, allowed: bool) -> None:
    row = activation_lock_row(session, device)
    row.allowed_acknowledged = allowed
    row.allowed_acknowledged_at = clock.now()


def wipe_reached_device(incident: Incident) -> bool:
    """The erase was confirmed, or the device fetched it (an erasing tablet may never get to
    acknowledge): from then on it may come back Activation Locked."""
    if incident.wiped_at is not None:
        return True
    erase: Command | None = incident.erase_command
    return erase is not None and erase.status in (CommandStatus.SENT, CommandStatus.ACKNOWLEDGED)


def reveal_bypass_code(session: Session, incident: Incident, *, secret_key: str, actor: Actor) -> str:
    """The escrowed code of the incident's device, for the administrator `actor`; audited. The
    caller checks the permission (web.rbac: activation_lock.reveal, administrators only)."""
    if not wipe_reached_device(incident):
        raise RevealRefused(
            "バイパスコードは、消去（ワイプ）が端末に届いた後にのみ表示できます。",
            "The bypass code is shown only after the wipe has reached the device.",
        )
    row = session.get(DeviceActivationLock, incident.device_id)
    if row is None or row.bypass_code_sealed is None:
        raise RevealRefused(
            "この端末のバイパスコードは預かっていません。",
            "No bypass code is escrowed for this device.",
        )
    code = unseal(secret_key, BYPASS_CODE_PURPOSE, row.bypass_code_sealed).decode("ascii")
    record_event(
        session,
        actor,
        "activation_lock.bypass_code_revealed",
        "incident",
        incident.id,
        {
            "device_id": incident.device_id,
            "escrowed_at": row.bypass_code_escrowed_at.isoformat() if row.bypass_code_escrowed_at else None,
        },
    )
    log.info(
        "activation lock bypass code of device %s shown to %s (incident %s)",
        incident.device_id,
        actor.name,
        incident.id,
    )
    return code
