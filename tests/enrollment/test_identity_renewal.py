"""Identities are renewed 30 days before they expire, by an InstallProfile the device can act on
without re-enrolling; never queued twice while one is pending."""

from __future__ import annotations

import base64
import plistlib
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.delivery import next_command
from enrollment.profile import MDM_PAYLOAD_IDENTIFIER, PROFILE_IDENTIFIER
from enrollment.renewal import queue_identity_renewals
from mdm.ground import ca as ca_service
from mdm.ground.config import Settings
from mdm.ground.models import AuditEvent, Command, CommandStatus, Device, DeviceCertificate
from mdm.ground.x509util import fingerprint
from mdm.services.devices import certificate_row_for
from tests.enrollment.conftest import ADMIN
from tests.enrollment.helpers import profile_dict
from tests.support.apple_device import SimulatedIPad
from tests.support.factories import make_device
from tests.support.scep_client import ScepClient, open_envelope


def _device_with_identity(
    session: Session, ca: ca_service.Credential, settings: Settings
) -> tuple[Device, Any, rsa.RSAPrivateKey]:
    device = make_device(session)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = ca_service.issue_device_identity(
        ca, key.public_key(), "Hikeshi device", days=settings.identity_cert_days
    )
    row = certificate_row_for(cert, purpose="mdm_identity")
    row.device_id = device.id
    session.add(row)
    session.commit()
    return device, cert, key


def _renewal_payloads(
    command: Command, key: rsa.RSAPrivateKey
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    signed = base64.b64decode(command.params["Payload"])
    top = profile_dict(signed)
    plaintext, cipher = open_envelope(top["EncryptedPayloadContent"], key)
    assert cipher == "aes256_cbc"
    return top, plistlib.loads(plaintext)


def test_renewal_is_queued_once_when_due(
    frozen_clock: Any, session: Session, provisioned_ca: ca_service.Credential, enroll_settings: Settings
) -> None:
    due, due_cert, due_key = _device_with_identity(session, provisioned_ca, enroll_settings)
    fresh, _, _ = _device_with_identity(session, provisioned_ca, enroll_settings)
    frozen_clock.advance(days=200)
    fresh_row = session.scalars(
        select(DeviceCertificate).where(DeviceCertificate.device_id == fresh.id)
    ).one()
    # `fresh` got a newer identity later on: only its newest identity counts.
    newer = ca_service.issue_device_identity(
        provisioned_ca,
        rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(),
        "n",
        days=365,
    )
    row = certificate_row_for(newer, purpose="mdm_identity")
    row.device_id = fresh.id
    session.add(row)
    session.commit()
    assert fresh_row.not_after < row.not_after

    assert queue_identity_renewals(session, enroll_settings, ADMIN) == []  # 165 days left: not yet
    frozen_clock.advance(days=140)  # 25 days left for `due` and for fresh's first identity
    queued = queue_identity_renewals(session, enroll_settings, ADMIN)
    session.commit()
    assert [c.device_id for c in queued] == [due.id]
    command = queued[0]
    assert command.request_type == "InstallProfile" and command.status == CommandStatus.QUEUED

    top, payloads = _renewal_payloads(command, due_key)
    assert top["PayloadIdentifier"] == PROFILE_IDENTIFIER and top["IsEncrypted"] is True
    assert "PayloadContent" not in top
    by_type = {p["PayloadType"]: p for p in payloads}
    mdm = by_type["com.apple.mdm"]
    assert mdm["PayloadIdentifier"] == MDM_PAYLOAD_IDENTIFIER
    assert mdm["Topic"] == due.topic
    assert mdm["IdentityCertificateUUID"] == by_type["com.apple.security.scep"]["PayloadUUID"]
    assert by_type["com.apple.security.scep"]["PayloadContent"]["Challenge"]
    # The challenge is not readable in the stored command nor in the audit trail.
    challenge = by_type["com.apple.security.scep"]["PayloadContent"]["Challenge"]
    for event in session.scalars(select(AuditEvent)):
        assert challenge not in str(event.details)

    # Pending: a second run queues nothing.
    assert queue_identity_renewals(session, enroll_settings, ADMIN) == []
    # Delivered but not yet answered is still pending.
    assert next_command(session, due, offer_not_now=False) is not None
    session.commit()
    assert queue_identity_renewals(session, enroll_settings, ADMIN) == []
    queued_events = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "device.identity_renewal_queued")
    ).all()
    assert [e.target_id for e in queued_events] == [str(due.id)]
    assert queued_events[0].details["current_certificate"] == fingerprint(due_cert)


def test_expired_command_lets_a_new_renewal_be_queued(
    frozen_clock: Any, session: Session, provisioned_ca: ca_service.Credential, enroll_settings: Settings
) -> None:
    device, _, _ = _device_with_identity(session, provisioned_ca, enroll_settings)
    frozen_clock.advance(days=340)
    first = queue_identity_renewals(session, enroll_settings, ADMIN)
    session.commit()
    assert len(first) == 1
    frozen_clock.advance(days=8)  # the command expires undelivered (7 days)
    assert next_command(session, device, offer_not_now=True) is None
    session.commit()
    second = queue_identity_renewals(session, enroll_settings, ADMIN)
    assert len(second) == 1 and second[0].uuid != first[0].uuid
    # Past expiry, nothing is queued: the device can no longer fetch it and must enroll again.
    frozen_clock.advance(days=30)
    session.commit()
    assert queue_identity_renewals(session, enroll_settings, ADMIN) == []


def test_device_renews_with_the_queued_challenge_and_keeps_speaking(
    frozen_clock: Any,
    enroll_client: Any,
    session: Session,
    provisioned_ca: ca_service.Credential,
    enroll_settings: Settings,
) -> None:
    device, cert, key = _device_with_identity(session, provisioned_ca, enroll_settings)
    frozen_clock.advance(days=345)
    [command] = queue_identity_renewals(session, enroll_settings, ADMIN)
    session.commit()
    _, payloads = _renewal_payloads(command, key)
    scep = next(p for p in payloads if p["PayloadType"] == "com.apple.security.scep")["PayloadContent"]

    ipad = SimulatedIPad(cert, key, udid=device.udid, topic=device.topic)
    # The device fetches the command with its current identity...
    response = ipad.connect(enroll_client, ipad.idle_body())
    assert response.status_code == 200
    assert plistlib.loads(response.data)["Command"]["RequestType"] == "InstallProfile"
    # ...obtains its new identity with the challenge...
    enrollment = ScepClient(enroll_client).enroll(scep["Challenge"], cipher="aes256_cbc")
    assert enrollment.reply.status == "0"
    new_cert = enrollment.reply.certificate
    assert (
        new_cert.not_valid_after_utc - new_cert.not_valid_before_utc
    ).days == enroll_settings.identity_cert_days
    # ...and from then on signs with it: no new Authenticate needed.
    renewed = SimulatedIPad(new_cert, enrollment.key, udid=device.udid, topic=device.topic)
    assert renewed.connect(enroll_client, renewed.result_body(command.uuid)).status_code == 200
    session.rollback()  # end the read snapshot to see what the server wrote
    session.expire_all()
    row = session.scalars(
        select(DeviceCertificate).where(DeviceCertificate.fingerprint_sha256 == fingerprint(new_cert))
    ).one()
    assert row.device_id == device.id and row.bound_at is not None
    assert session.get(Command, command.id).status == CommandStatus.ACKNOWLEDGED  # type: ignore[union-attr]
    # The challenge was for this renewal only.
    again = ScepClient(enroll_client).enroll(scep["Challenge"])
    assert (again.reply.status, again.reply.fail_info) == ("2", "2")
    # Renewed: nothing more to queue.
    assert queue_identity_renewals(session, enroll_settings, ADMIN) == []
