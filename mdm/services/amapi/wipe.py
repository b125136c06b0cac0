"""The wipe of an AMAPI-mode tablet: after the hotline's two-person approval (or a recorded break
glass) queued EraseDevice as for every device, the sender calls `enterprises.devices.delete` with
`wipeDataFlags` and `wipeReasonMessage` (mdm.services.amapi.command_map.delete_call).

What is known afterwards is said exactly (DESIGN.md invariant 5): Google accepted the deletion,
which issues the wipe to the tablet; Android Device Policy factory-resets it when the instruction
reaches it, and the API reports no confirmation from the tablet. The command is recorded as
answered by the API (its result names devices.delete and the flags), and the wipe certificate
(commands.wipe_certificate) says "issued through the Android Management API; the tablet's own
confirmation: not reported".

A delete is its own fence: a sender killed between Google's answer and its commit leaves a claim;
the next one calls devices.delete again, and Google's 404 (the device is gone) is that earlier
deletion's acceptance.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from commands.context import CommandContext
from commands.results import record_result
from mdm.ground import clock
from mdm.ground.audit import record_event
from mdm.ground.db import transaction
from mdm.ground.models import AmapiCommandSend, Command, CommandStatus
from mdm.ground.models.amapi_ops import amapi_identity
from mdm.ground.models.incident import Incident
from mdm.services.amapi.command_map import DeleteCall, delete_call
from mdm.services.amapi.sending import SENDER, AmapiCaller, SendReport, record_refusal, refused_for_good

METHOD = "devices.delete"


def _call_for(session: Session, command_id: int) -> DeleteCall:
    command = session.get(Command, command_id)
    params = dict(command.params or {}) if command is not None else {}
    incident = session.scalars(select(Incident).where(Incident.erase_command_id == command_id)).first()
    reason = incident.wipe_request_reason or incident.break_glass_reason if incident is not None else None
    return delete_call(params, reason)


def issue_delete(
    factory: sessionmaker[Session],
    client: AmapiCaller,
    context: CommandContext,
    command_id: int,
    device_name: str,
    earlier_claim: datetime | None,
    report: SendReport,
) -> None:
    """Call devices.delete for a claimed EraseDevice and record what Google said."""
    with transaction(factory) as session:
        call = _call_for(session, command_id)
    try:
        client.call("DELETE", device_name, params=call.params())
        gone_before = False
    except Exception as exc:
        status = getattr(exc, "status", None)
        if status == 404 and earlier_claim is not None:
            gone_before = True  # our own earlier deletion, whose answer a killed sender never recorded
        elif refused_for_good(exc):
            with transaction(factory) as session:
                record_refusal(session, command_id, device_name, exc, context)
            report.refused += 1
            return
        else:
            with transaction(factory) as session:
                send = session.get(AmapiCommandSend, command_id)
                if send is not None:
                    send.last_error = f"{type(exc).__name__}: {exc}"[:255]
            raise
    report.issued += 1
    with transaction(factory) as session:
        if record_delete_accepted(session, command_id, device_name, call, context, gone_before=gone_before):
            report.settled += 1


def record_delete_accepted(
    session: Session,
    command_id: int,
    device_name: str,
    call: DeleteCall,
    context: CommandContext,
    *,
    gone_before: bool = False,
) -> bool:
    """Google accepted devices.delete: the EraseDevice is answered (by the API, not the tablet),
    which fixes the incident's wipe certificate and retires the device (commands.incidents.results)."""
    send = session.get(AmapiCommandSend, command_id)
    command = session.get(Command, command_id)
    if send is None or command is None or send.done_at is not None or command.status in CommandStatus.FINAL:
        return False
    now = clock.now()
    send.issued_at = send.issued_at or now
    send.done_at = now
    answer: dict[str, Any] = {
        "CommandUUID": command.uuid,
        "Status": "Acknowledged",
        "AcknowledgedBy": "Android Management API",
        "Method": METHOD,
        "Device": device_name,
        "WipeDataFlags": list(call.wipe_data_flags),
        # Whether the tablet itself confirmed: the API never says, so it is not claimed.
        "DeviceConfirmed": None,
        "AlreadyDeleted": gone_before,
    }
    record_event(
        session,
        SENDER,
        "command.issued_amapi",
        "command",
        command.uuid,
        {
            "device_id": command.device_id,
            "request_type": command.request_type,
            "method": METHOD,
            "wipe_data_flags": list(call.wipe_data_flags),
        },
    )
    record_result(
        session,
        command.device,
        answer,
        json.dumps(answer, sort_keys=True).encode(),
        actor=SENDER,
        identity=amapi_identity(device_name),
        context=context,
    )
    return True
