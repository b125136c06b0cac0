"""Device lifecycle on the Apple check-in channel: identity binding, Authenticate, TokenUpdate,
CheckOut. Called by the thin handlers in mdm/apple; never commits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mdm import clock
from mdm.audit import Actor, record_event
from mdm.models import Device, DeviceCertificate, DeviceMessage, EnrollmentState
from mdm.secretbox import seal
from mdm.x509util import fingerprint, to_pem


class DeviceIdentityError(PermissionError):
    """The certificate presented may not speak for this device."""


class CheckinMessageError(ValueError):
    """A check-in message lacks a required key or has the wrong type; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


# Services that react to a device finishing enrollment (first TokenUpdate) register here.
EnrolledHook = Callable[[Session, Device, Actor], None]
_ENROLLED_HOOKS: list[EnrolledHook] = []
# Services that react to a new identity binding (e.g. placing the device in its token's unit).
BoundHook = Callable[[Session, Device, DeviceCertificate, Actor], None]
_BOUND_HOOKS: list[BoundHook] = []


def on_enrolled(fn: EnrolledHook) -> EnrolledHook:
    _ENROLLED_HOOKS.append(fn)
    return fn


def on_identity_bound(fn: BoundHook) -> BoundHook:
    _BOUND_HOOKS.append(fn)
    return fn


def device_actor(udid: str, source_ip: str | None) -> Actor:
    return Actor(f"device:{udid}", "device", source_ip)


def require_string(message: dict[str, Any], key: str, max_length: int = 255) -> str:
    value = message.get(key)
    if not isinstance(value, str) or not value.strip():
        raise CheckinMessageError(key, "required and must be a non-empty string")
    if len(value) > max_length:
        raise CheckinMessageError(key, f"longer than {max_length} characters")
    return value


def find_device_by_udid(session: Session, udid: str) -> Device | None:
    return session.scalars(select(Device).where(Device.udid == udid)).first()


def lookup_device_by_udid(session: Session, udid: str) -> Device | None:
    """A UDID typed by a person (CLI): exact, else ignoring case (UDIDs are hex, and people copy
    them in either case), when that names exactly one device. Device requests never use this:
    a device is identified by its certificate, its UDID compared exactly."""
    udid = udid.strip()
    exact = find_device_by_udid(session, udid)
    if exact is not None:
        return exact
    found = session.scalars(select(Device).where(func.lower(Device.udid) == udid.lower()).limit(2)).all()
    return found[0] if len(found) == 1 else None


def _certificate_row(session: Session, cert: x509.Certificate) -> DeviceCertificate | None:
    return session.scalars(
        select(DeviceCertificate).where(DeviceCertificate.fingerprint_sha256 == fingerprint(cert))
    ).first()


def identify_device(session: Session, cert: x509.Certificate, udid: str) -> Device:
    """The device this certificate is bound to, which must be the one named by the UDID.

    Raises DeviceIdentityError before anything is written otherwise.
    """
    device = find_device_by_udid(session, udid)
    row = _certificate_row(session, cert)
    if device is None:
        raise DeviceIdentityError("unknown device: it must Authenticate first")
    if row is None or row.device_id != device.id:
        raise DeviceIdentityError("certificate is not bound to this device")
    if row.revoked_at is not None:
        raise DeviceIdentityError("certificate has been revoked")
    return device


def check_can_authenticate(session: Session, cert: x509.Certificate, udid: str) -> None:
    """Refuse, before writing, an Authenticate whose certificate already speaks for another device."""
    row = _certificate_row(session, cert)
    if row is None:
        return
    if row.revoked_at is not None:
        raise DeviceIdentityError("certificate has been revoked")
    if row.device_id is not None:
        device = session.get(Device, row.device_id)
        if device is not None and device.udid != udid:
            raise DeviceIdentityError("certificate is bound to another device")


def authenticate(
    session: Session, cert: x509.Certificate, message: dict[str, Any], raw: bytes, source_ip: str | None
) -> Device:
    """Authenticate: bind the identity certificate to the UDID and record what the device is."""
    udid = require_string(message, "UDID", 128)
    check_can_authenticate(session, cert, udid)
    actor = device_actor(udid, source_ip)
    now = clock.now()
    device = find_device_by_udid(session, udid)
    created = device is None
    if device is None:
        device = Device(udid=udid, platform="apple", created_at=now)
        session.add(device)
    _apply_facts(device, message)
    previous_state = device.enrollment_state
    if created or previous_state in (EnrollmentState.UNENROLLED, EnrollmentState.RETIRED):
        device.enrollment_state = EnrollmentState.PENDING
    device.last_seen_at = now
    session.flush()
    row = _certificate_row(session, cert)
    if row is None:
        row = certificate_row_for(cert)
        session.add(row)
    newly_bound = row.device_id != device.id
    row.device_id = device.id
    row.bound_at = row.bound_at if not newly_bound else now
    session.add(DeviceMessage(device_id=device.id, message_type="Authenticate", raw=raw, source_ip=source_ip))
    session.flush()
    record_event(
        session,
        actor,
        "device.authenticated",
        "device",
        device.id,
        {
            "udid": udid,
            "serial_number": device.serial_number,
            "certificate": row.fingerprint_sha256,
            "previous_state": None if created else previous_state,
        },
    )
    if newly_bound:
        for hook in _BOUND_HOOKS:
            hook(session, device, row, actor)
    return device


def certificate_row_for(cert: x509.Certificate) -> DeviceCertificate:
    return DeviceCertificate(
        fingerprint_sha256=fingerprint(cert),
        subject=cert.subject.rfc4514_string()[:512],
        issuer=cert.issuer.rfc4514_string()[:512],
        serial_hex=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        pem=to_pem(cert),
        created_at=clock.now(),
    )


def _apply_facts(device: Device, message: dict[str, Any]) -> None:
    for key, attr, limit in (
        ("SerialNumber", "serial_number", 64),
        ("DeviceName", "device_name", 255),
        ("Model", "model", 64),
        ("ModelName", "model_name", 128),
        ("ProductName", "product_name", 64),
        ("OSVersion", "os_version", 32),
        ("BuildVersion", "build_version", 32),
        ("Topic", "topic", 255),
    ):
        value = message.get(key)
        if isinstance(value, str) and value:
            setattr(device, attr, value[:limit])


def token_update(
    session: Session,
    device: Device,
    message: dict[str, Any],
    raw: bytes,
    source_ip: str | None,
    *,
    secret_key: str,
) -> Device:
    """TokenUpdate: store the push token, PushMagic, topic and UnlockToken; first one enrolls."""
    token = message.get("Token")
    if not isinstance(token, bytes) or not token:
        raise CheckinMessageError("Token", "required and must be data")
    push_magic = require_string(message, "PushMagic", 128)
    topic = require_string(message, "Topic", 255)
    unlock = message.get("UnlockToken")
    if unlock is not None and not isinstance(unlock, bytes):
        raise CheckinMessageError("UnlockToken", "must be data")
    actor = device_actor(device.udid or "", source_ip)
    now = clock.now()
    first = device.enrollment_state != EnrollmentState.ENROLLED
    device.push_token = token.hex()
    device.push_magic = push_magic
    device.topic = topic
    if unlock:
        device.unlock_token_encrypted = seal(secret_key, "unlock-token", unlock)
    device.token_stale_at = None
    device.push_error = None
    device.last_seen_at = now
    if first:
        device.enrollment_state = EnrollmentState.ENROLLED
        device.enrolled_at = now
        device.unenrolled_at = None
    session.add(DeviceMessage(device_id=device.id, message_type="TokenUpdate", raw=raw, source_ip=source_ip))
    record_event(
        session,
        actor,
        "device.enrolled" if first else "device.token_updated",
        "device",
        device.id,
        {"topic": topic, "unlock_token": bool(unlock)},
    )
    if first:
        for hook in _ENROLLED_HOOKS:
            hook(session, device, actor)
    return device


def check_out(session: Session, device: Device, raw: bytes, source_ip: str | None) -> Device:
    """CheckOut: the MDM profile was removed. The device and its history stay."""
    now = clock.now()
    device.enrollment_state = EnrollmentState.UNENROLLED
    device.unenrolled_at = now
    device.last_seen_at = now
    device.push_token = None
    device.push_magic = None
    session.add(DeviceMessage(device_id=device.id, message_type="CheckOut", raw=raw, source_ip=source_ip))
    record_event(
        session, device_actor(device.udid or "", source_ip), "device.checked_out", "device", device.id, {}
    )
    return device


def touch(device: Device) -> None:
    device.last_seen_at = clock.now()
