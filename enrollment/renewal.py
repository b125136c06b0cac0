"""Identity renewal: replace a device identity before it expires, without re-enrolling.

An expired identity silently cuts a tablet off (it can no longer sign its check-ins), so
`identity_renewal_days` (30 by default) before expiry the device is sent an InstallProfile with
the enrollment profile again: same profile and MDM payload identifiers, a fresh SCEP payload with
a single-use challenge bound to that device. The payloads are encrypted to the device's current
identity (EncryptedPayloadContent): the command and its audit record then never hold a usable
challenge. The certificate the device obtains is bound to it at issuance (enrollment.issuance).

A scheduler job calls `queue_identity_renewals` (daily is plenty); it never queues a second
renewal while one is still pending for a device.
"""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from commands.catalog import get_command_type
from commands.context import NO_CONTEXT, CommandContext
from commands.queue import enqueue_command
from enrollment.profile import encrypted_profile_plist, enrollment_payloads, push_topic
from enrollment.tokens import issue_renewal_challenge
from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.ca import builtin_device_cas, device_ca_certificate, profile_signer
from mdm.ground.config import Settings
from mdm.ground.models import (
    ChallengePurpose,
    Command,
    CommandStatus,
    Device,
    DeviceCertificate,
    EnrollmentChallenge,
    EnrollmentState,
)
from mdm.ground.signing import sign_profile

RENEWAL_DESCRIPTION = (
    "端末証明書を期限前に更新します。登録はそのまま維持されます。\n"
    "Renews this device's identity certificate before it expires; the enrollment stays as it is."
)


def current_identity(session: Session, device: Device) -> DeviceCertificate | None:
    """The device's newest unrevoked identity (the one it will sign with after any renewal)."""
    return session.scalars(
        select(DeviceCertificate)
        .where(DeviceCertificate.device_id == device.id, DeviceCertificate.revoked_at.is_(None))
        .order_by(DeviceCertificate.not_after.desc(), DeviceCertificate.id.desc())
        .limit(1)
    ).first()


def renewal_pending(session: Session, device: Device) -> bool:
    found = session.scalars(
        select(EnrollmentChallenge.id)
        .join(Command, Command.id == EnrollmentChallenge.command_id)
        .where(
            EnrollmentChallenge.device_id == device.id,
            EnrollmentChallenge.purpose == ChallengePurpose.RENEW,
            Command.status.in_(CommandStatus.PENDING),
        )
        .limit(1)
    ).first()
    return found is not None


def devices_due(session: Session, settings: Settings) -> list[tuple[Device, DeviceCertificate]]:
    """Enrolled Apple devices whose newest identity from the built-in CA expires within the window.

    Identities already expired are left out: such a device can no longer fetch a command and has
    to enroll again. Identities from an external CA (HIKESHI_DEVICE_CA_FILE) are renewed by that CA.
    """
    now = clock.now()
    horizon = now + timedelta(days=settings.identity_renewal_days)
    newest = (
        select(DeviceCertificate.device_id, func.max(DeviceCertificate.not_after).label("not_after"))
        .where(DeviceCertificate.device_id.is_not(None), DeviceCertificate.revoked_at.is_(None))
        .group_by(DeviceCertificate.device_id)
        .subquery()
    )
    devices = session.scalars(
        select(Device)
        .join(newest, newest.c.device_id == Device.id)
        .where(
            Device.platform == "apple",
            Device.enrollment_state == EnrollmentState.ENROLLED,
            newest.c.not_after > now,
            newest.c.not_after <= horizon,
        )
        .order_by(Device.id)
    ).all()
    ca_subjects = {ca.subject.rfc4514_string() for ca in builtin_device_cas(session, settings)}
    due = []
    for device in devices:
        identity = current_identity(session, device)
        if identity is not None and identity.issuer in ca_subjects:
            due.append((device, identity))
    return due


def queue_identity_renewal(
    session: Session,
    settings: Settings,
    device: Device,
    identity: DeviceCertificate,
    *,
    actor: Actor,
    context: CommandContext = NO_CONTEXT,
) -> Command:
    """Queue one renewal InstallProfile for `device`, whose current identity is `identity`."""
    kind = get_command_type("InstallProfile")
    now = clock.now()
    configured = timedelta(days=settings.command_expiry_days)
    # The renewal challenge needs an end even if the catalog ever let InstallProfile wait forever.
    expires_at = now + (kind.lifetime(configured) or configured)
    challenge, secret = issue_renewal_challenge(session, device, expires_at=expires_at)
    ca_cert = device_ca_certificate(session)
    topic = device.topic or push_topic(session)
    payloads, scep_uuid = enrollment_payloads(settings, ca_cert=ca_cert, challenge=secret, topic=topic)
    recipient = x509.load_pem_x509_certificate(identity.pem.encode())
    plist = encrypted_profile_plist(settings, payloads, RENEWAL_DESCRIPTION, recipient)
    signed = sign_profile(plist, profile_signer(session, settings), [ca_cert])
    command = enqueue_command(
        session,
        device,
        "InstallProfile",
        {"Payload": signed},
        actor=actor,
        expires_at=expires_at,
        context=context,
    )
    challenge.command_id = command.id
    session.flush()
    record_event(
        session,
        actor,
        "device.identity_renewal_queued",
        "device",
        device.id,
        {
            "command": command.uuid,
            "current_certificate": identity.fingerprint_sha256,
            "expires": identity.not_after.isoformat(),
            "scep_payload_uuid": scep_uuid,
        },
    )
    return command


def queue_identity_renewals(
    session: Session, settings: Settings, actor: Actor, *, context: CommandContext = NO_CONTEXT
) -> list[Command]:
    """Queue a renewal for every device due and not already waiting for one; returns the new commands."""
    queued = []
    for device, identity in devices_due(session, settings):
        if renewal_pending(session, device):
            continue
        queued.append(
            queue_identity_renewal(session, settings, device, identity, actor=actor, context=context)
        )
    return queued
