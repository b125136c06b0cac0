"""Incidents in every state, made through the real services (for the API, RBAC and console tests)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

import commands.incidents as hotline
from commands.results import record_result
from mdm.ground import clock
from mdm.ground.audit import Actor
from mdm.ground.models import Device, DeviceCertificate, IdentityPurpose
from mdm.ground.models.incident import Incident
from mdm.services.devices import bound_identities
from tests.support.factories import make_device
from tests.support.people import person

OPERATOR = Actor("operator-tanaka", "operator", "192.0.2.10")
APPROVER = Actor("duty-officer-sato", "approver", "192.0.2.11")
REPORT = {"caller_name": "山田 太郎", "caller_unit": "救急3隊", "callback_number": "090-1234-5678"}
INCIDENT = "/api/v1/incidents/{incident_id}"


def opened(session: Session, device: Device) -> Incident:
    return hotline.open_incident(session, device, REPORT, actor=OPERATOR)


def give_identity(session: Session, device: Device) -> str:
    """A bound identity row for a factory-made device (a real one has one from enrollment):
    a wipe certificate needs the acknowledgement to come from the identity held at approval."""
    existing = bound_identities(session, device)
    if existing:
        return existing[-1].fingerprint_sha256
    now = clock.now()
    fp = secrets.token_hex(32)
    purpose = IdentityPurpose.ANDROID_AGENT if device.platform == "android" else IdentityPurpose.MDM_IDENTITY
    session.add(
        DeviceCertificate(
            fingerprint_sha256=fp,
            device_id=device.id,
            subject=f"CN=device-{device.id}",
            issuer="CN=Hikeshi Device CA",
            serial_hex=fp[:16],
            not_before=now - timedelta(days=1),
            not_after=now + timedelta(days=365),
            pem="-",
            purpose=purpose,
            bound_at=now,
        )
    )
    session.flush()
    return fp


def wipe_requested(session: Session, device: Device) -> Incident:
    give_identity(session, device)
    incident = opened(session, device)
    hotline.request_wipe(session, incident, actor=person(session, OPERATOR), reason="盗難の疑い")
    return incident


def acknowledge(session: Session, device: Device, command_uuid: str, status: str = "Acknowledged") -> None:
    report = {"Status": status, "CommandUUID": command_uuid, "UDID": device.udid}
    identities = bound_identities(session, device)
    record_result(
        session,
        device,
        report,
        b"<plist/>",
        actor=Actor(f"device:{device.udid}", "device"),
        identity=identities[-1].fingerprint_sha256 if identities else None,
    )


def wiped(session: Session, unit_id: int | None) -> Incident:
    """A device of its own (a wiped device is retired), wiped with two people and confirmed."""
    device = make_device(session)
    device.org_unit_id = unit_id
    incident = wipe_requested(session, device)
    erase = hotline.approve_wipe(session, incident, actor=person(session, APPROVER))
    acknowledge(session, device, erase.uuid)
    return incident


def rbac_incidents(session: Session, device: Device) -> tuple[str, dict[tuple[str, str], dict[str, Any]]]:
    """The incident every hotline endpoint of the RBAC table acts on: each state-changing endpoint
    gets its own, so one role's calls in table order never trip over each other."""
    per_endpoint = {
        ("POST", INCIDENT + "/wipe-approval"): wipe_requested(session, device),
        ("POST", INCIDENT + "/wipe-rejection"): wipe_requested(session, device),
        ("POST", INCIDENT + "/break-glass"): opened(session, device),
        ("POST", INCIDENT + "/recover"): opened(session, device),
    }
    certified = wiped(session, device.org_unit_id)
    for suffix in ("/certificate", "/certificate/signature", "/certificate/html"):
        per_endpoint[("GET", INCIDENT + suffix)] = certified
    main = opened(session, device)
    session.flush()
    return str(main.id), {key: {"incident_id": str(i.id)} for key, i in per_endpoint.items()}


def rbac_bodies(device_id: int) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        ("POST", "/api/v1/incidents"): {
            "device_id": device_id,
            "caller_name": "山田 太郎",
            "caller_unit": "救急3隊",
        },
        ("POST", INCIDENT + "/lock"): {},
        ("POST", INCIDENT + "/wipe-request"): {"reason": "盗難の疑い"},
        ("POST", INCIDENT + "/wipe-rejection"): {"reason": "回収の見込みあり"},
        ("POST", INCIDENT + "/break-glass"): {"reason": "個人情報流出の危険"},
        ("POST", INCIDENT + "/recover"): {},
    }
