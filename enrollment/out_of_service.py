"""An administrator takes an Android tablet's record out of service: the tablet was factory-reset
without a wipe (or its agent is lost for good), so its record is still enrolled and a new
enrollment claiming its serial number is refused (409 serial_conflict,
mdm.services.android_channel.enrollment).

This is the only way an enrolled Android record stops being enrolled other than an acknowledged
wipe: a person decides it, with a reason, audited. The record keeps its history; its
certificates (its identity and the Wi-Fi certificates it holds) are revoked at once, so whatever
still holds them is locked out, and the tablet can then enroll again (as a new record) with a
token of its unit.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import Device, DeviceCertificate, EnrollmentState
from mdm.services.wifi_certificates import revoke_held

MAX_REASON = 500


class OutOfServiceRefused(ValueError):
    def __init__(self, field: str, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


def take_out_of_service(session: Session, device: Device, *, actor: Actor, reason: str | None) -> Device:
    """Enrolled Android record → unenrolled, certificates revoked; never commits."""
    text = (reason or "").strip()
    if not text or len(text) > MAX_REASON:
        raise OutOfServiceRefused("reason", f"a reason of 1 to {MAX_REASON} characters is required", 400)
    if device.platform != "android":
        raise OutOfServiceRefused("device", "only Android records are taken out of service this way")
    if device.enrollment_state != EnrollmentState.ENROLLED:
        raise OutOfServiceRefused("device", f"the device is {device.enrollment_state}, not enrolled")
    now = clock.now()
    revoked = []
    for row in session.scalars(
        select(DeviceCertificate).where(
            DeviceCertificate.device_id == device.id, DeviceCertificate.revoked_at.is_(None)
        )
    ):
        row.revoked_at = now
        revoked.append(row.fingerprint_sha256)
    revoked.extend(revoke_held(session, device))
    device.enrollment_state = EnrollmentState.UNENROLLED
    device.unenrolled_at = now
    record_event(
        session,
        actor,
        "device.taken_out_of_service",
        "device",
        device.id,
        {"reason": text, "serial_number": device.serial_number, "revoked_certificates": revoked},
    )
    return device
