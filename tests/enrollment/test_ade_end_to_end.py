"""Automated Device Enrollment end to end, over real HTTP where it is HTTP:

device assignment service simulator (loopback) → sync → the unit's ADE profile assigned →
a simulated ADE iPad posts its machine info, signed under a test CA standing in for Apple's
device CA → the signed enrollment profile of its unit → SCEP (the built-in CA) → Authenticate,
TokenUpdate with AwaitingConfiguration → the unit's profiles installed → DeviceConfigured.
Then the tablet is erased and enrolls again, by itself, into the same unit; a certificate from
a leaked enrollment QR code still cannot take it over, nor can machine info not signed by Apple.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor
from mdm.ground.config import Settings
from mdm.ground.models import AdeDevice, AuditEvent, Command, CommandStatus, Device, EnrollmentState
from mdm.services.ade import units
from mdm.services.ade.profiles import save_profile
from mdm.services.ade.server_token import store_server_token, token_key_certificate
from mdm.services.ade.sync import client_for, sync
from tests.ade.conftest import abm_token, token_fields
from tests.enrollment.helpers import challenge_of, profile_dict
from tests.support import pki
from tests.support.ade_service import DeviceAssignmentService, RunningService
from tests.support.apple_device import SimulatedIPad
from tests.support.scep_client import ScepClient

ADMIN = Actor("admin:test", "admin", "127.0.0.1")
SERIAL = "DMPXK0AAAA01"


def _ca(name: str, issuer: tuple[Any, Any] | None, *, days: int = 3650) -> tuple[Any, Any]:
    """A CA certificate (CA:TRUE), self-signed or under `issuer`."""
    key = pki.rsa_key(name)
    now = clock.now()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=days))
        .not_valid_after(now - timedelta(days=1) if issuer else now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(issuer[1] if issuer else key, hashes.SHA256())
    )
    return cert, key


@pytest.fixture(scope="module")
def apple_ca() -> dict[str, Any]:
    """Stand-ins for Apple Root CA → Apple iPhone Certification Authority → Apple iPhone Device
    CA, the last two expired as Apple's are, and a device certificate under them."""
    root = _ca("Apple Root CA (test)", None)
    iphone_ca = _ca("Apple iPhone Certification Authority (test)", root)
    device_ca = _ca("Apple iPhone Device CA (test)", iphone_ca)
    device_cert, device_key = pki.issue_cert(
        device_ca[0], device_ca[1], "B1C2D3E4-0000-4000-8000-ADE000000001"
    )
    return {"root": root, "chain": [device_ca[0], iphone_ca[0]], "device": (device_cert, device_key)}


@pytest.fixture
def abm() -> Any:
    service = DeviceAssignmentService("CK_3f2a9c1e", "CS_5b7d0a", "AT_9e8f7a", "AS_1c2d3e")
    running = RunningService(service)
    yield running
    running.stop()


@pytest.fixture
def enroll_settings(settings: Settings, abm: Any, apple_ca: dict[str, Any], tmp_path: Any) -> Settings:
    anchors = pki.write_pem(tmp_path / "apple-device-ca.pem", apple_ca["root"][0])
    return replace(settings, push_enabled=False, ade_url=abm.url, ade_device_ca_file=str(anchors))


def _setup_abm(session: Session, settings: Settings, abm: Any, tree: Any, tmp_path: Any) -> None:
    from profiles.assignment import assign_profile
    from profiles.service import create_profile
    from profiles.templates import template_spec

    key = token_key_certificate(session, settings, actor=ADMIN)
    cert = tmp_path / "abm.pem"
    cert.write_text(key.cert_pem)
    p7m = abm_token(cert, tmp_path / "t.p7m", token_fields(clock.now() + timedelta(days=300)))
    store_server_token(session, settings, p7m.read_bytes(), actor=ADMIN)
    units.add_rule(session, "serial", SERIAL, tree.ambulance, actor=ADMIN)
    save_profile(session, tree.ambulance, {"support_phone_number": "03-1234-5678"}, actor=ADMIN)
    profile = create_profile(
        session,
        ADMIN,
        template_spec("myna-kyukyu", identifier="jp.lg.example.fd.myna"),
        secret_key=settings.secret_key,
    )
    assign_profile(session, settings, profile, tree.ambulance, actor=ADMIN)
    session.commit()
    abm.service.add_device(SERIAL)
    with httpx.Client(timeout=10) as http:
        report = sync(
            session, settings, client_for(session, settings, http, sleep=lambda s: None), actor=ADMIN
        )
    session.commit()
    assert report.assigned == 1
    assert abm.service.devices[SERIAL].profile_status == "assigned"


def _run_setup_assistant(
    client: Any, ipad: SimulatedIPad, apple_ca: dict[str, Any], session: Session
) -> Device:
    """What Setup Assistant does after the ADE profile sent it to Hikeshi, until the home screen."""
    body = ipad.machine_info_body(*apple_ca["device"], chain=apple_ca["chain"])
    response = ipad.post_machine_info(client, body)
    assert response.status_code == 200, response.data[:300]
    assert response.headers["Content-Type"] == "application/x-apple-aspen-config"
    enrollment = ScepClient(client).enroll(challenge_of(profile_dict(response.data)))
    assert enrollment.reply.status == "0", enrollment.reply.fail_info
    ipad.take_identity(enrollment.reply.certificate, enrollment.key)
    assert ipad.checkin(client, ipad.authenticate_body()).status_code == 200
    assert ipad.checkin(client, ipad.token_update_body(awaiting_configuration=True)).status_code == 200
    seen: list[str] = []
    response = ipad.connect(client, ipad.idle_body())
    for _ in range(20):
        if response.status_code != 200 or not response.data:
            break
        import plistlib

        command = plistlib.loads(response.data)["Command"]
        seen.append(command["RequestType"])
        response = ipad.connect(client, ipad.result_body(plistlib.loads(response.data)["CommandUUID"]))
    assert "InstallProfile" in seen and "DeviceConfigured" in seen, seen
    # DeviceConfigured only after every profile install was answered.
    assert seen.index("DeviceConfigured") > max(i for i, t in enumerate(seen) if t == "InstallProfile")
    session.rollback()
    session.expire_all()
    return session.scalars(select(Device).where(Device.udid == ipad.udid)).one()


def test_ade_ipad_enrolls_into_its_unit_configured_and_re_enrolls_after_a_wipe(
    enroll_client: Any,
    session: Session,
    enroll_settings: Settings,
    abm: Any,
    tree: Any,
    push_topic: str,
    apple_ca: dict[str, Any],
    tmp_path: Any,
) -> None:
    _setup_abm(session, enroll_settings, abm, tree, tmp_path)
    first_cert, first_key = pki.issue_cert(*_placeholder(), "placeholder")
    ipad = SimulatedIPad(first_cert, first_key, serial=SERIAL, topic=push_topic)

    device = _run_setup_assistant(enroll_client, ipad, apple_ca, session)
    assert device.enrollment_state == EnrollmentState.ENROLLED
    assert device.org_unit_id == tree.ambulance.id
    ade_row = session.scalars(select(AdeDevice).where(AdeDevice.serial_number == SERIAL)).one()
    assert ade_row.device_id == device.id and ade_row.awaiting_configuration_at is None
    configured = session.scalars(
        select(Command).where(Command.device_id == device.id, Command.request_type == "DeviceConfigured")
    ).one()
    assert configured.status == CommandStatus.ACKNOWLEDGED

    # Erased by the crew on the tablet itself (nobody told the server): same UDID, new identity.
    old_identity = ipad.identity_cert
    ipad.rotate_push_token()
    again = _run_setup_assistant(enroll_client, ipad, apple_ca, session)
    assert again.id == device.id and again.org_unit_id == tree.ambulance.id
    assert again.enrollment_state == EnrollmentState.ENROLLED
    stale = SimulatedIPad(old_identity, first_key, udid=ipad.udid, serial=SERIAL, topic=push_topic)
    assert stale.connect(enroll_client, stale.idle_body()).status_code in (401, 403)
    reasons = [
        e.details.get("reason")
        for e in session.scalars(select(AuditEvent).where(AuditEvent.action == "device.identity_rebound"))
    ]
    assert reasons == ["ade_reenrollment"]


def _placeholder() -> tuple[Any, Any]:
    return pki.make_ca("not yet enrolled")


def test_leaked_qr_identity_still_cannot_take_over_an_ade_tablet(
    enroll_client: Any,
    session: Session,
    enroll_settings: Settings,
    abm: Any,
    tree: Any,
    push_topic: str,
    apple_ca: dict[str, Any],
    make_token: Any,
    tmp_path: Any,
) -> None:
    _setup_abm(session, enroll_settings, abm, tree, tmp_path)
    cert, key = pki.issue_cert(*_placeholder(), "placeholder")
    ipad = SimulatedIPad(cert, key, serial=SERIAL, topic=push_topic)
    _run_setup_assistant(enroll_client, ipad, apple_ca, session)

    leaked = make_token(tree.ambulance, uses=5)
    served = enroll_client.get(f"/enroll/{leaked.secret}")
    attacker_id = ScepClient(enroll_client).enroll(challenge_of(profile_dict(served.data)))
    attacker = SimulatedIPad(
        attacker_id.reply.certificate, attacker_id.key, udid=ipad.udid, serial=SERIAL, topic=push_topic
    )
    assert attacker.checkin(enroll_client, attacker.authenticate_body()).status_code == 403
    assert ipad.connect(enroll_client, ipad.idle_body()).status_code == 200  # the tablet keeps working


def test_machine_info_not_signed_through_apple_or_for_a_foreign_serial_is_refused(
    enroll_client: Any,
    session: Session,
    enroll_settings: Settings,
    abm: Any,
    tree: Any,
    push_topic: str,
    apple_ca: dict[str, Any],
    tmp_path: Any,
) -> None:
    _setup_abm(session, enroll_settings, abm, tree, tmp_path)
    forger_ca, forger_key = pki.make_ca("Apple iPhone Device CA (forged)")
    forged_cert, forged_key = pki.issue_cert(forger_ca, forger_key, "forged")
    ipad = SimulatedIPad(forged_cert, forged_key, serial=SERIAL, topic=push_topic)
    refused = ipad.post_machine_info(
        enroll_client, ipad.machine_info_body(forged_cert, forged_key, [forger_ca])
    )
    assert refused.status_code == 401 and b"trusted device CA" in refused.data
    stranger = SimulatedIPad(forged_cert, forged_key, serial="DMPXK0ZZZZ99", topic=push_topic)
    body = stranger.machine_info_body(*apple_ca["device"], chain=apple_ca["chain"])
    foreign = stranger.post_machine_info(enroll_client, body)
    assert foreign.status_code == 403 and b"not assigned to this MDM server" in foreign.data
    garbage = ipad.post_machine_info(enroll_client, b"\x30\x03\x02\x01\x00")
    assert garbage.status_code == 400
    session.rollback()
    assert (
        session.scalars(select(AuditEvent).where(AuditEvent.action == "ade.enrollment_served")).first()
        is None
    )


def test_an_ade_identity_cannot_rebind_another_udid(
    enroll_client: Any,
    session: Session,
    enroll_settings: Settings,
    abm: Any,
    tree: Any,
    push_topic: str,
    apple_ca: dict[str, Any],
    make_token: Any,
    tmp_path: Any,
) -> None:
    _setup_abm(session, enroll_settings, abm, tree, tmp_path)
    # Another tablet, enrolled by QR code.
    token = make_token(tree.pump, uses=1)
    qr_id = ScepClient(enroll_client).enroll(
        challenge_of(profile_dict(enroll_client.get(f"/enroll/{token.secret}").data))
    )
    victim = SimulatedIPad(qr_id.reply.certificate, qr_id.key, topic=push_topic)
    assert victim.checkin(enroll_client, victim.authenticate_body()).status_code == 200
    assert victim.checkin(enroll_client, victim.token_update_body()).status_code == 200
    # A genuine ADE tablet's machine info gets an identity for its own UDID only.
    cert, key = pki.issue_cert(*_placeholder(), "placeholder")
    ade = SimulatedIPad(cert, key, serial=SERIAL, topic=push_topic)
    served = ade.post_machine_info(
        enroll_client, ade.machine_info_body(*apple_ca["device"], chain=apple_ca["chain"])
    )
    issued = ScepClient(enroll_client).enroll(challenge_of(profile_dict(served.data)))
    impostor = SimulatedIPad(issued.reply.certificate, issued.key, udid=victim.udid, topic=push_topic)
    assert impostor.checkin(enroll_client, impostor.authenticate_body()).status_code == 403
    assert victim.connect(enroll_client, victim.idle_body()).status_code == 200
