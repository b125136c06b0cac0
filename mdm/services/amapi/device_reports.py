"""An AMAPI `Device` resource (ENROLLMENT and STATUS_REPORT notifications, devices.list) applied
to Hikeshi's device rows: a tablet enrolled with one of Hikeshi's tokens lands in that token's
unit; every report refreshes the same inventory, compliance and readiness as the other platforms.

A Device whose enrollment token Hikeshi never made is refused and flagged (an alert), never
placed: the token, not what the tablet says about itself, decides the unit.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import record_event
from mdm.ground.models import (
    AmapiDevice,
    AmapiEnrollmentToken,
    Device,
    EnrollmentState,
    Severity,
)
from mdm.services.alerts.service import raise_alert
from mdm.services.amapi.google_time import google_time
from mdm.services.amapi.inventory_map import agent_inventory
from mdm.services.amapi.sending import SENDER
from mdm.services.inventory.android import apply_android_inventory

ENROLLMENT_REFUSED_ALERT = "amapi.enrollment_refused"
# The Device resource kept on amapi_devices.last_report: bounded (a device's app list can be long).
MAX_REPORT_BYTES = 64 * 1024
_LARGE_KEYS = ("applicationReports", "hardwareStatusSamples", "memoryEvents", "powerManagementEvents")


@dataclass(frozen=True)
class Applied:
    outcome: str  # "applied", "refused", "unknown_device", "retired"
    reason: str | None = None
    device_id: int | None = None


def bounded_report(device: dict[str, Any]) -> dict[str, Any]:
    """The Device as kept: whole when small, without its long lists otherwise."""
    if len(json.dumps(device, default=str)) <= MAX_REPORT_BYTES:
        return device
    trimmed = {k: v for k, v in device.items() if k not in _LARGE_KEYS}
    trimmed["trimmed"] = sorted(k for k in _LARGE_KEYS if k in device)
    return (
        trimmed if len(json.dumps(trimmed, default=str)) <= MAX_REPORT_BYTES else {"name": device.get("name")}
    )


def _token_unit(session: Session, resource: dict[str, Any]) -> tuple[AmapiEnrollmentToken | None, str | None]:
    """Hikeshi's token the tablet enrolled with, or why it is not one."""
    name = resource.get("enrollmentTokenName")
    if not isinstance(name, str) or not name:
        return None, "the device names no enrollment token"
    token = session.scalars(
        select(AmapiEnrollmentToken).where(AmapiEnrollmentToken.token_name == name)
    ).first()
    if token is None:
        return None, "enrolled with a token Hikeshi did not make"
    data = resource.get("enrollmentTokenData")
    if isinstance(data, str) and data:
        try:
            claimed = json.loads(data).get("org_unit_id")
        except (ValueError, AttributeError):
            claimed = None
        if claimed is not None and claimed != token.org_unit_id:
            return None, "the token's additional data names another unit than Hikeshi's record of it"
    return token, None


def apply_device(session: Session, resource: dict[str, Any], *, enrolling: bool) -> Applied:
    """One Device resource. `enrolling` (an ENROLLMENT notification, or a device found by the
    reconcile): a device Hikeshi does not know yet is created in its token's unit."""
    name = resource.get("name")
    if not isinstance(name, str) or not name.startswith("enterprises/"):
        return Applied("refused", "the Device has no resource name")
    amapi = session.scalars(select(AmapiDevice).where(AmapiDevice.amapi_name == name)).first()
    if amapi is None:
        if not enrolling:
            return Applied("unknown_device", "a device Hikeshi did not enroll")
        token, problem = _token_unit(session, resource)
        if token is None:
            _flag_unknown_token(session, name, resource, problem or "")
            return Applied("refused", problem)
        holder = _enrolled_with_serial(session, resource)
        if holder is not None:
            # Never matched by what it claims (DESIGN.md invariant 3): the serial of a tablet that is
            # still enrolled (a factory reset without a wipe, or a copied serial) is for a person to
            # sort out, not merged and not silently duplicated.
            problem = f"another enrolled tablet (device {holder}) has this serial number"
            _flag_unknown_token(session, name, resource, problem)
            return Applied("refused", problem)
        amapi = _enroll(session, name, resource, token)
    device = session.get(Device, amapi.device_id)
    if device is None or device.enrollment_state in (EnrollmentState.RETIRED, EnrollmentState.UNENROLLED):
        return Applied("retired", "the device is no longer managed here", amapi.device_id)
    _apply_report(session, amapi, device, resource)
    return Applied("applied", None, device.id)


def _enrolled_with_serial(session: Session, resource: dict[str, Any]) -> int | None:
    hardware = resource.get("hardwareInfo")
    serial = hardware.get("serialNumber") if isinstance(hardware, dict) else None
    if not isinstance(serial, str) or not serial:
        return None
    return session.scalars(
        select(Device.id).where(
            Device.platform == "android",
            Device.enrollment_state == EnrollmentState.ENROLLED,
            Device.serial_number == serial[:64],
        )
    ).first()


def _enroll(
    session: Session, name: str, resource: dict[str, Any], token: AmapiEnrollmentToken
) -> AmapiDevice:
    now = clock.now()
    found = resource.get("hardwareInfo")
    hardware: dict[str, Any] = found if isinstance(found, dict) else {}
    serial = hardware.get("serialNumber")
    enterprise = name.split("/devices/", 1)[0]
    device = Device(
        platform="android",
        udid=f"amapi-{uuid.uuid4()}",
        serial_number=str(serial)[:64] if serial else None,
        enrollment_state=EnrollmentState.ENROLLED,
        enrolled_at=google_time(resource.get("enrollmentTime")) or now,
        last_seen_at=now,
        org_unit_id=token.org_unit_id,
        # A QR-enrolled tablet is fully managed (device owner), what lost mode needs; the report's
        # managementMode overrides this below when it says otherwise.
        is_supervised=resource.get("managementMode", "DEVICE_OWNER") == "DEVICE_OWNER",
        created_at=now,
    )
    session.add(device)
    session.flush()
    amapi = AmapiDevice(
        device_id=device.id,
        amapi_name=name,
        enterprise_name=enterprise,
        policy_name=resource.get("policyName") if isinstance(resource.get("policyName"), str) else None,
        created_at=now,
        updated_at=now,
    )
    session.add(amapi)
    session.flush()
    record_event(
        session,
        SENDER,
        "device.enrolled_amapi",
        "device",
        device.id,
        {"amapi_name": name, "org_unit_id": token.org_unit_id, "enrollment_token": token.token_name},
    )
    return amapi


def _apply_report(session: Session, amapi: AmapiDevice, device: Device, resource: dict[str, Any]) -> None:
    now = clock.now()
    reported = google_time(resource.get("lastStatusReportTime"))
    if (
        reported is not None
        and amapi.last_status_report_at is not None
        and reported < amapi.last_status_report_at
    ):
        return  # an older report arriving late: what is known is newer
    apply_android_inventory(session, device, agent_inventory(resource))
    # Seen when the tablet last reported to Google (not when Hikeshi heard of it).
    seen = reported or now
    if device.last_seen_at is None or seen > device.last_seen_at:
        device.last_seen_at = min(seen, now)
    version = resource.get("appliedPolicyVersion")
    if isinstance(version, str | int) and not isinstance(version, bool) and str(version).isdigit():
        amapi.applied_policy_version = int(version)
    if isinstance(resource.get("policyName"), str):
        amapi.policy_name = resource["policyName"]
    if reported is not None:
        amapi.last_status_report_at = reported
    amapi.last_report = bounded_report(resource)
    amapi.updated_at = now


def _flag_unknown_token(session: Session, name: str, resource: dict[str, Any], problem: str) -> None:
    hardware = resource.get("hardwareInfo") if isinstance(resource.get("hardwareInfo"), dict) else {}
    serial = hardware.get("serialNumber") if isinstance(hardware, dict) else None
    raise_alert(
        session,
        ENROLLMENT_REFUSED_ALERT,
        Severity.WARNING,
        f"Android Management API の登録を受け付けませんでした: {name} ({problem}) / "
        f"Enrollment through the Android Management API not accepted: {name} ({problem})",
        details={
            "amapi_name": name,
            "enrollment_token": resource.get("enrollmentTokenName"),
            "serial_number": serial,
            "reason": problem,
        },
    )
    record_event(
        session,
        SENDER,
        "device.amapi_enrollment_refused",
        "device",
        name[:128],
        {"reason": problem, "enrollment_token": resource.get("enrollmentTokenName"), "serial_number": serial},
    )
