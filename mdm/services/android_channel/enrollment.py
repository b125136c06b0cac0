"""Enrolling an Android agent: one use of an android enrollment token buys one identity
certificate from the built-in CA, bound at once to the device it enrolls, in the token's unit.

The token use is taken with a guarded UPDATE (unrevoked, unexpired, below its maximum), so a
one-use token enrolls exactly one agent however many race for it.

Nothing the agent claims (serial number, hardware ids) ever selects an existing device: every
enrollment creates a new device row (DESIGN.md invariant 3). A claimed serial number that belongs
to a device still enrolled is refused with 409 `serial_conflict`, an admin alert and an audit
event; the enrolled device, its certificates, unit and queue are untouched. A tablet that was
wiped (retired) or taken out of service (unenrolled) enrolls again as a new row; the old row
keeps its history and state, and the audit event names it only as a claimed predecessor.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from enrollment.hooks import join_token_unit
from enrollment.issuance import audit_identity_issued
from enrollment.tokens import TokenUnavailable, take_token_use, usable_token
from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.ca import device_ca, issue_device_identity
from mdm.ground.config import Settings
from mdm.ground.models import (
    Device,
    EnrollmentState,
    EnrollmentTokenUse,
    Severity,
)
from mdm.services.alerts.service import raise_alert
from mdm.services.android_channel.agent import PLATFORM, ProtocolError
from mdm.services.android_channel.csr import load_csr
from mdm.services.android_channel.policy import AgentPolicy, current_policy
from mdm.services.android_channel.wake import wake_channels
from mdm.services.devices import certificate_row_for, device_actor
from mdm.services.inventory.facts import facts_for

_TOKEN_ERRORS = {
    "unknown": "the enrollment token is not valid",
    "expired": "the enrollment token has expired",
    "used_up": "the enrollment token has been used",
    "revoked": "the enrollment token has been revoked",
    "wrong_platform": "the enrollment token is not for Android",
}


class SerialConflict(ProtocolError):
    """The claimed serial number belongs to a device that is still enrolled: refused, never merged."""

    def __init__(self, serial: str) -> None:
        super().__init__(
            409,
            "serial_conflict",
            "a device with this serial number is already enrolled; an administrator must take it out "
            "of service (or it must be wiped) before this tablet can enroll",
            "hardware.serial_number",
        )
        self.serial = serial


@dataclass(frozen=True)
class Enrolled:
    device: Device
    certificate: x509.Certificate
    ca_certificate: x509.Certificate
    policy: AgentPolicy
    wake: dict[str, Any]


def enroll(session: Session, settings: Settings, data: dict[str, Any], *, source_ip: str | None) -> Enrolled:
    """Enroll from a validated request (protocol.EnrollRequestSchema); never commits.

    Raises ProtocolError (400 csr, 403 token_*); the caller rolls back on any error but one:
    SerialConflict (409) comes with nothing of the enrollment written (its token use included)
    and the refusal's alert and audit event recorded, for the caller to commit.
    """
    try:
        with session.begin_nested():
            return _enroll(session, settings, data, source_ip=source_ip)
    except SerialConflict as exc:
        record_serial_conflict(
            session, exc.serial, token_secret=data["enrollment_token"], source_ip=source_ip
        )
        raise


def _enroll(session: Session, settings: Settings, data: dict[str, Any], *, source_ip: str | None) -> Enrolled:
    csr = load_csr(data["csr"])
    try:
        token = usable_token(session, data["enrollment_token"], platform=PLATFORM)
    except TokenUnavailable as exc:
        raise ProtocolError(403, f"token_{exc.state}", _TOKEN_ERRORS.get(exc.state, "token refused")) from exc
    if not take_token_use(session, token.id):
        # Another agent took the last use between our read and this write.
        raise ProtocolError(403, "token_used_up", _TOKEN_ERRORS["used_up"])
    ca = device_ca(session, settings)
    hardware = data.get("hardware") or {}
    now = clock.now()
    predecessors = _same_serial(session, hardware.get("serial_number"))
    device = _new_device(session, hardware)
    actor = device_actor(device.udid or "", source_ip)
    cert = issue_device_identity(
        ca, csr.public_key(), f"hikeshi-android-{device.id}", days=settings.identity_cert_days
    )
    row = certificate_row_for(cert, purpose="android_agent")
    row.device_id = device.id
    row.bound_at = now
    row.enrollment_token_id = token.id
    session.add(row)
    session.flush()
    session.add(
        EnrollmentTokenUse(
            token_id=token.id,
            device_certificate_id=row.id,
            device_id=device.id,
            used_at=now,
            bound_at=now,
            source_ip=source_ip,
        )
    )
    device.enrollment_state = EnrollmentState.ENROLLED
    device.enrolled_at = now
    device.unenrolled_at = None
    device.last_seen_at = now
    try:
        # The unique index on enrolled Android serials settles a race between two agents claiming
        # one serial number: the second one's flush fails here (after the first commits).
        session.flush()
    except IntegrityError as exc:
        raise SerialConflict(hardware.get("serial_number") or "") from exc
    if data.get("device_owner") is not None:
        device.is_supervised = data["device_owner"]
        facts_for(session, device.id).android_device_owner = data["device_owner"]
    session.flush()
    session.refresh(token)
    record_event(
        session,
        actor,
        "enrollment_token.used",
        "enrollment_token",
        token.id,
        {"certificate": row.fingerprint_sha256, "use_count": token.use_count, "max_uses": token.max_uses},
    )
    audit_identity_issued(
        session,
        actor,
        row,
        {"purpose": "android_enroll", "enrollment_token_id": token.id, "device_id": device.id},
    )
    record_event(
        session,
        actor,
        "device.enrolled",
        "device",
        device.id,
        {
            "platform": PLATFORM,
            "serial_number": device.serial_number,
            # Claimed, not proven: earlier rows (retired or unenrolled) with the same serial.
            "same_serial_as": predecessors,
            "device_owner": data.get("device_owner"),
            "agent": data.get("agent") or {},
        },
    )
    join_token_unit(session, device, token, row.fingerprint_sha256, actor=actor)
    return Enrolled(
        device,
        cert,
        ca.certificate,
        current_policy(session, device, secret_key=settings.secret_key, public_url=settings.public_url),
        wake_channels(settings, device.id),
    )


def _same_serial(session: Session, serial: str | None) -> list[int]:
    """Ids of Android devices claiming this serial (none enrolled, or SerialConflict)."""
    if not serial:
        return []
    rows = session.execute(
        select(Device.id, Device.enrollment_state)
        .where(Device.platform == PLATFORM, Device.serial_number == serial)
        .order_by(Device.id)
    ).all()
    if any(state == EnrollmentState.ENROLLED for _id, state in rows):
        raise SerialConflict(serial)
    return [device_id for device_id, _state in rows]


def _new_device(session: Session, hardware: dict[str, Any]) -> Device:
    """A new device row: the agent names no identifier we could trust for identity."""
    device = Device(platform=PLATFORM, udid=f"android-{uuid.uuid4()}", created_at=clock.now())
    device.serial_number = hardware.get("serial_number") or None
    manufacturer, model = hardware.get("manufacturer"), hardware.get("model")
    if model:
        device.model = model[:64]
        device.model_name = " ".join(p for p in (manufacturer, model) if p)[:128]
    if hardware.get("device_name"):
        device.device_name = hardware["device_name"][:255]
    if hardware.get("product"):
        device.product_name = hardware["product"][:64]
    session.add(device)
    session.flush()
    return device


def record_serial_conflict(
    session: Session, serial: str, *, token_secret: str, source_ip: str | None
) -> None:
    """After the refused enrollment rolled back to its savepoint: the admin alert and audit event.
    Names the enrolled device and the unit of the token used."""
    enrolled = session.scalars(
        select(Device).where(
            Device.platform == PLATFORM,
            Device.serial_number == serial,
            Device.enrollment_state == EnrollmentState.ENROLLED,
        )
    ).first()
    token_unit = None
    try:
        token_unit = usable_token(session, token_secret, platform=PLATFORM).org_unit_id
    except TokenUnavailable:
        pass
    details = {
        "serial_number": serial,
        "enrolled_device_id": enrolled.id if enrolled else None,
        "enrolled_device_unit_id": enrolled.org_unit_id if enrolled else None,
        "token_unit_id": token_unit,
        "source_ip": source_ip,
    }
    record_event(
        session,
        Actor(f"android-agent:{source_ip or 'unknown'}", "device", source_ip),
        "enrollment.serial_conflict",
        "device",
        enrolled.id if enrolled else None,
        details,
    )
    raise_alert(
        session,
        "android.serial_conflict",
        Severity.CRITICAL,
        f"Android enrollment refused: serial {serial} is already enrolled (登録済みシリアルでの登録を拒否)",
        device=enrolled,
        org_unit_id=enrolled.org_unit_id if enrolled else token_unit,
        details=details,
    )
