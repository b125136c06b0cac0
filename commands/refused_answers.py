"""An authenticated device's answer that Hikeshi cannot accept (too large to parse and store).

Left alone, the command would stay `sent` and be offered again at every Idle, the device would
answer again with the same oversized list, and nobody would be told. Instead the command fails
with its reason, it is never offered again, and an alert names the device.

The caller has authenticated the device from the request's signature or client certificate only:
the body was never parsed, so its UDID and CommandUUID are not read from it. The command is one
of that device's own `sent` commands whose UUID appears in the body, so a device can only ever
fail a command it was itself given.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import Command, CommandStatus, Device, Severity
from mdm.services.alerts.service import raise_alert

ALERT_KIND = "command.answer_too_large"


def answered_command(session: Session, device: Device, uuids: Collection[str]) -> Command | None:
    """The device's own command in flight that the answer names, if any (newest delivery first)."""
    wanted = {u.upper() for u in uuids}
    if not wanted:
        return None
    sent = session.scalars(
        select(Command)
        .where(Command.device_id == device.id, Command.status == CommandStatus.SENT)
        .order_by(Command.sent_at.desc(), Command.id.desc())
    )
    return next((c for c in sent if c.uuid.upper() in wanted), None)


def refuse_oversized_answer(
    session: Session,
    device: Device,
    uuids: Collection[str],
    size: int,
    limit: int,
    *,
    actor: Actor,
) -> Command | None:
    """Fail the command the answer is about (if it is still in flight) and alert; never commits."""
    command = answered_command(session, device, uuids)
    now = clock.now()
    kind = command.request_type if command is not None else "?"
    if command is not None:
        command.status = CommandStatus.FAILED
        command.failed_at = now
        command.failure_reason = f"answer too large ({size} bytes)"
        record_event(
            session,
            actor,
            f"command.{CommandStatus.FAILED}",
            "command",
            command.uuid,
            {
                "device_id": device.id,
                "request_type": command.request_type,
                "reason": command.failure_reason,
                "limit": limit,
            },
        )
    name = device.device_name or device.serial_number or device.udid or f"#{device.id}"
    raise_alert(
        session,
        ALERT_KIND,
        Severity.WARNING,
        f"{name} の回答が大きすぎて受け取れない: {kind} ({size} バイト、上限 {limit} バイト)"
        f" / Answer too large from {name}: {kind} ({size} bytes, limit {limit})",
        device=device,
        details={
            "command_uuid": command.uuid if command is not None else None,
            "request_type": command.request_type if command is not None else None,
            "size": size,
            "limit": limit,
        },
    )
    return command
