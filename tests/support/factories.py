"""Rows for tests, written through the same models the server uses."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.models import Device, EnrollmentState


def make_device(
    session: Session,
    *,
    udid: str | None = None,
    serial: str | None = None,
    supervised: bool = True,
    state: str = EnrollmentState.ENROLLED,
    token: str | None = None,
) -> Device:
    device = Device(
        udid=udid or str(uuid.uuid4()).upper(),
        serial_number=serial or f"DMQ{uuid.uuid4().hex[:9].upper()}",
        platform="apple",
        is_supervised=supervised,
        enrollment_state=state,
        push_token=token or uuid.uuid4().hex * 2,
        push_magic=str(uuid.uuid4()).upper(),
        topic="com.apple.mgmt.External.test",
        created_at=clock.now(),
        enrolled_at=clock.now() if state == EnrollmentState.ENROLLED else None,
    )
    session.add(device)
    session.flush()
    return device
