"""The audit event of a device's answer (issue 18): on PostgreSQL the statement that settles the
command inserts it too, with what the settled row says (its request type, a lock-screen message
result). It must say what `record_event` said, and seal into an unbroken chain."""

from __future__ import annotations

import plistlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.queue import enqueue_command
from mdm.ground.audit import verify_chain
from mdm.ground.audit_sealer import seal_all
from mdm.ground.models import AuditEvent, Device
from tests.protocol.test_apple_loop import ADMIN, _enroll, _skip_first_inventory, fresh


def _answered(client: Any, ipad: Any, session: Session, request_type: str, status: str, **keys: Any) -> str:
    device = session.scalars(select(Device).where(Device.udid == ipad.udid)).one()
    command = enqueue_command(session, device, request_type, None, actor=ADMIN)
    session.commit()
    handed = plistlib.loads(ipad.connect(client, ipad.idle_body()).data)
    assert handed["CommandUUID"] == command.uuid
    assert ipad.connect(client, ipad.result_body(command.uuid, status, **keys)).status_code == 200
    return command.uuid


def _event_of(session: Session, uuid: str) -> AuditEvent:
    fresh(session)
    [event] = session.scalars(
        select(AuditEvent).where(
            AuditEvent.target_type == "command",
            AuditEvent.target_id == uuid,
            AuditEvent.actor_role == "device",  # not the console's queueing of it
        )
    ).all()
    return event


def test_an_answer_is_audited_with_its_command_and_what_the_device_said(
    app: Any, client: Any, ipad: Any, session: Session
) -> None:
    _enroll(client, ipad)
    _skip_first_inventory(session)
    device_id = session.scalars(select(Device.id).where(Device.udid == ipad.udid)).one()

    shown = _answered(client, ipad, session, "DeviceLock", "Acknowledged", MessageResult="NoPasscodeSet")
    event = _event_of(session, shown)
    assert (event.action, event.actor) == ("command.acknowledged", f"device:{ipad.udid}")
    assert event.details == {
        "device_id": device_id,
        "request_type": "DeviceLock",
        "status": "Acknowledged",
        "message_result": "NoPasscodeSet",
    }

    # No message result: no key for one (never null).
    failed = _answered(client, ipad, session, "DeviceInformation", "Error")
    event = _event_of(session, failed)
    assert event.action == "command.error"
    assert event.details == {"device_id": device_id, "request_type": "DeviceInformation", "status": "Error"}

    seal_all(app.extensions["hikeshi"].session_factory)
    fresh(session)
    sealed = _event_of(session, failed)
    assert sealed.seq is not None and sealed.hash is not None
    assert verify_chain(session).ok
