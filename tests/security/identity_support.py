"""Helpers for the hostile-device suite: tablets enrolled for real (profile → SCEP → signed
Authenticate and TokenUpdate) and snapshots of every table an attack must leave untouched."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground.models import (
    Alert,
    AuditEvent,
    Command,
    CommandResult,
    Device,
    DeviceCertificate,
    DeviceMessage,
    EnrollmentTokenUse,
    Incident,
    IncidentStep,
    WipeCertificate,
)
from tests.enrollment.helpers import challenge_of, profile_dict
from tests.support.apple_device import SimulatedIPad
from tests.support.scep_client import ScepClient

# The tables an identity attack must not change (alerts and audit events are checked apart).
GUARDED = (
    Device,
    DeviceCertificate,
    DeviceMessage,
    Command,
    CommandResult,
    Incident,
    IncidentStep,
    WipeCertificate,
    EnrollmentTokenUse,
)


def fresh(session: Session) -> None:
    """End the test's read snapshot: see what the server committed."""
    session.rollback()
    session.expire_all()


def snapshot(session: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every guarded table, every column, in id order."""
    fresh(session)
    tables: dict[str, list[tuple[Any, ...]]] = {}
    for model in GUARDED:
        table = model.__table__
        rows = session.execute(select(table).order_by(table.c.id)).all()
        tables[table.name] = [tuple(row) for row in rows]
    return tables


def scep_identity(client: Any, secret: str, **options: Any) -> tuple[Any, Any]:
    """What a leaked QR code buys: the enrollment profile, then an identity over SCEP."""
    response = client.get(f"/enroll/{secret}")
    assert response.status_code == 200, response.data[:300]
    enrollment = ScepClient(client).enroll(challenge_of(profile_dict(response.data)), **options)
    assert enrollment.reply.status == "0", enrollment.reply.fail_info
    return enrollment.reply.certificate, enrollment.key


def enrolled_ipad(client: Any, secret: str, topic: str, **ipad: Any) -> SimulatedIPad:
    """A tablet that scanned the QR code: identity over SCEP, Authenticate, TokenUpdate."""
    cert, key = scep_identity(client, secret)
    device = SimulatedIPad(cert, key, topic=topic, **ipad)
    assert device.checkin(client, device.authenticate_body()).status_code == 200
    assert device.checkin(client, device.token_update_body()).status_code == 200
    return device


def device_of(session: Session, udid: str) -> Device:
    fresh(session)
    return session.scalars(select(Device).where(Device.udid == udid)).one()


def alerts(session: Session, kind: str) -> list[Alert]:
    fresh(session)
    return list(session.scalars(select(Alert).where(Alert.kind == kind).order_by(Alert.id)))


def events(session: Session, action: str) -> list[AuditEvent]:
    fresh(session)
    stmt = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
    return list(session.scalars(stmt))
