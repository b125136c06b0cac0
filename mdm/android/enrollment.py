"""Enrolling an Android agent: one use of an android enrollment token buys one identity
certificate from the built-in CA, bound at once to the device it enrolls, in the token's unit.

The token use is taken with a guarded UPDATE (unrevoked, unexpired, below its maximum), so a
one-use token enrolls exactly one agent however many race for it. A tablet that enrolls again
(reset, or wiped and re-provisioned) with the same serial number keeps its device row and
history; the certificates it held before are revoked, so an old copy of the agent is locked out.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from enrollment.ca import device_ca, issue_device_identity
from enrollment.hooks import join_token_unit
from enrollment.issuance import BadCertificateRequest, check_csr
from enrollment.tokens import TokenUnavailable, take_token_use, usable_token
from mdm import clock
from mdm.android.policy import AgentPolicy, current_policy
from mdm.android.protocol import PLATFORM, ProtocolError
from mdm.audit import record_event
from mdm.config import Settings
from mdm.devices import certificate_row_for, device_actor
from mdm.inventory.facts import facts_for
from mdm.models import (
    Device,
    DeviceCertificate,
    EnrollmentState,
    EnrollmentTokenUse,
)

_TOKEN_ERRORS = {
    "unknown": "the enrollment token is not valid",
    "expired": "the enrollment token has expired",
    "used_up": "the enrollment token has been used",
    "revoked": "the enrollment token has been revoked",
    "wrong_platform": "the enrollment token is not for Android",
}


@dataclass(frozen=True)
class Enrolled:
    device: Device
    certificate: x509.Certificate
    ca_certificate: x509.Certificate
    policy: AgentPolicy


def enroll(session: Session, settings: Settings, data: dict[str, Any], *, source_ip: str | None) -> Enrolled:
    """Enroll from a validated request (protocol.EnrollRequestSchema); never commits.

    Raises ProtocolError (400 csr, 403 token_*); the caller rolls back on any error.
    """
    csr = _load_csr(data["csr"])
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
    device, previous_state = _device_for(session, hardware)
    actor = device_actor(device.udid or "", source_ip)
    revoked = _revoke_previous(session, device)
    cert = issue_device_identity(
        ca, csr.public_key(), f"hikeshi-android-{device.id}", days=settings.identity_cert_days
    )
    row = certificate_row_for(cert)
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
    record_event(
        session,
        actor,
        "enrollment.identity_issued",
        "device_certificate",
        row.id,
        {
            "purpose": "android_enroll",
            "enrollment_token_id": token.id,
            "device_id": device.id,
            "fingerprint": row.fingerprint_sha256,
            "subject": row.subject,
            "not_after": row.not_after.isoformat(),
        },
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
            "previous_state": previous_state,
            "device_owner": data.get("device_owner"),
            "agent": data.get("agent") or {},
            "revoked_certificates": revoked,
        },
    )
    join_token_unit(session, device, token, row.fingerprint_sha256, actor=actor)
    return Enrolled(
        device, cert, ca.certificate, current_policy(session, device, secret_key=settings.secret_key)
    )


def _load_csr(text: str) -> x509.CertificateRequest:
    try:
        if "-----BEGIN" in text:
            csr = x509.load_pem_x509_csr(text.encode())
        else:
            csr = x509.load_der_x509_csr(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, binascii.Error) as exc:
        raise ProtocolError(
            400, "bad_request", "csr: not a PEM or base64 DER PKCS#10 request", "csr"
        ) from exc
    try:
        check_csr(csr)
    except BadCertificateRequest as exc:
        raise ProtocolError(400, "bad_request", f"csr: {exc}", "csr") from exc
    return csr


def _device_for(session: Session, hardware: dict[str, Any]) -> tuple[Device, str | None]:
    """The device row for this tablet (same serial number: the same tablet) and its former state."""
    serial = hardware.get("serial_number")
    device = None
    if serial:
        device = session.scalars(
            select(Device)
            .where(Device.platform == PLATFORM, Device.serial_number == serial)
            .order_by(Device.id.desc())
            .limit(1)
        ).first()
    previous = device.enrollment_state if device is not None else None
    if device is None:
        # The agent names no identifier we could trust for identity; the server makes one.
        device = Device(platform=PLATFORM, udid=f"android-{uuid.uuid4()}", created_at=clock.now())
        session.add(device)
    device.serial_number = serial or device.serial_number
    manufacturer, model = hardware.get("manufacturer"), hardware.get("model")
    if model:
        device.model = model[:64]
        device.model_name = " ".join(p for p in (manufacturer, model) if p)[:128]
    if hardware.get("device_name"):
        device.device_name = hardware["device_name"][:255]
    if hardware.get("product"):
        device.product_name = hardware["product"][:64]
    session.flush()
    return device, previous


def _revoke_previous(session: Session, device: Device) -> list[str]:
    now = clock.now()
    rows = session.scalars(
        select(DeviceCertificate).where(
            DeviceCertificate.device_id == device.id, DeviceCertificate.revoked_at.is_(None)
        )
    ).all()
    for row in rows:
        row.revoked_at = now
    return [row.fingerprint_sha256 for row in rows]
