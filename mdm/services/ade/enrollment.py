"""Enrolling an ADE device: from verified machine info to the signed enrollment profile of its
unit, then the identity binding and the configuration step of Setup Assistant.

1. `profile_for_machine_info`: the machine info is Apple-signed (machine_info.py); its serial
   must be a device ABM assigned to this server (not removed) and placed in a unit. The answer is
   the same enrollment profile as a QR enrollment (enrollment.profile), with a single-use SCEP
   challenge of purpose ADE, recorded with the UDID Apple vouched for (AdeEnrollment).
2. The identity issued through that challenge is linked to the AdeEnrollment (enrollment.issuance);
   at Authenticate, mdm.services.devices lets it replace an enrolled device's identity only for
   that same UDID: a wiped ADE tablet re-enrolls by itself, while a certificate from a leaked QR
   code still meets the identity conflict it always met.
3. `place_ade_device` (IDENTITY_BOUND): the device joins its ABM device's unit.
4. `begin_configuration` (TokenUpdate with AwaitingConfiguration) and `after_answer` (each command
   result): the unit's profiles are queued at enrollment (profiles.assignment); once none of them
   is still pending, DeviceConfigured is queued, so Setup Assistant ends configured.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from commands.context import CommandContext
from commands.queue import enqueue_command
from enrollment.profile import RenderedProfile, enrollment_payloads, profile_plist, push_topic
from enrollment.tokens import hash_secret
from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.ca import device_ca_certificate, profile_signer
from mdm.ground.config import Settings
from mdm.ground.models import (
    AdeDevice,
    AdeEnrollment,
    ChallengePurpose,
    Command,
    CommandStatus,
    Device,
    DeviceCertificate,
    EnrollmentChallenge,
    OrgUnit,
)
from mdm.ground.signing import sign_profile
from mdm.services import orgunits
from mdm.services.ade.machine_info import MachineInfo, device_ca_anchors, read_machine_info

DEVICE_CONFIGURED = "DeviceConfigured"
# What must be answered before Setup Assistant may finish: the unit's profiles and required apps.
SETUP_COMMANDS = ("InstallProfile", "InstallApplication")


class NotAnAdeDevice(PermissionError):
    """Authentic machine info for a serial this server may not enroll (403, reason)."""


def _ade_device(session: Session, info: MachineInfo) -> AdeDevice:
    row = session.scalars(select(AdeDevice).where(AdeDevice.serial_number == info.serial)).first()
    if row is None or row.removed_at is not None:
        raise NotAnAdeDevice(f"serial {info.serial} is not assigned to this MDM server in ABM")
    if row.org_unit_id is None:
        raise NotAnAdeDevice(f"serial {info.serial} is in no unit yet: place it in the console")
    return row


def profile_for_machine_info(
    session: Session, settings: Settings, body: bytes, *, source_ip: str | None
) -> RenderedProfile:
    """The signed enrollment profile for the device whose machine info `body` is.

    Raises MachineInfoRefused, DeviceCANotConfigured, NotAnAdeDevice, NoPushTopic or CANotReady
    before anything is written."""
    info = read_machine_info(body, device_ca_anchors(settings))
    device = _ade_device(session, info)
    topic = push_topic(session)
    ca_cert = device_ca_certificate(session)
    signer = profile_signer(session, settings)
    secret = secrets.token_urlsafe(32)
    now = clock.now()
    challenge = EnrollmentChallenge(
        challenge_hash=hash_secret(secret),
        purpose=ChallengePurpose.ADE,
        created_at=now,
        expires_at=now + timedelta(minutes=settings.scep_challenge_minutes),
        source_ip=source_ip,
    )
    session.add(challenge)
    session.flush()
    enrollment = AdeEnrollment(
        ade_device_id=device.id, udid=info.udid, challenge_id=challenge.id, served_at=now, source_ip=source_ip
    )
    session.add(enrollment)
    session.flush()
    unit = session.get(OrgUnit, device.org_unit_id)
    record_event(
        session,
        Actor(f"ade-device:{info.serial}", "device", source_ip),
        "ade.enrollment_served",
        "ade_device",
        info.serial,
        {
            "udid": info.udid,
            "product": info.product,
            "os_version": info.version,
            "org_unit_id": device.org_unit_id,
            "challenge_id": challenge.id,
            "machine_info_signer": info.signer.subject.rfc4514_string()[:200],
        },
    )
    payloads, scep_uuid = enrollment_payloads(settings, ca_cert=ca_cert, challenge=secret, topic=topic)
    label_ja = orgunits.path_label(session, unit) if unit else ""
    label_en = orgunits.path_label(session, unit, english=True) if unit else ""
    description = (
        f"この端末を {label_ja} の端末として Hikeshi MDM に登録します（自動デバイス登録）。\n"
        f"Enrolls this device in Hikeshi MDM for {label_en} (Automated Device Enrollment)."
    )
    plist = profile_plist(settings, payloads, description)
    return RenderedProfile(payloads, plist, sign_profile(plist, signer, [ca_cert]), scep_uuid)


def place_ade_device(session: Session, device: Device, row: DeviceCertificate, actor: Actor) -> None:
    """IDENTITY_BOUND: an identity issued through an ADE enrollment puts the device in its unit."""
    enrollment = session.scalars(
        select(AdeEnrollment).where(AdeEnrollment.device_certificate_id == row.id)
    ).first()
    if enrollment is None:
        return
    ade_device = session.get(AdeDevice, enrollment.ade_device_id)
    if ade_device is None:
        return
    ade_device.device_id = device.id
    ade_device.updated_at = clock.now()
    unit = session.get(OrgUnit, ade_device.org_unit_id) if ade_device.org_unit_id else None
    orgunits.assign_device(session, device, unit, actor=actor)
    record_event(
        session,
        actor,
        "device.enrolled_with_ade",
        "device",
        device.id,
        {
            "serial_number": ade_device.serial_number,
            "org_unit_id": ade_device.org_unit_id,
            "certificate": row.fingerprint_sha256,
        },
    )


def _ade_row_of(session: Session, device: Device) -> AdeDevice | None:
    return session.scalars(select(AdeDevice).where(AdeDevice.device_id == device.id)).first()


def begin_configuration(session: Session, device: Device, actor: Actor, *, context: CommandContext) -> None:
    """TokenUpdate with AwaitingConfiguration: Setup Assistant waits for DeviceConfigured."""
    row = _ade_row_of(session, device)
    if row is None:
        # Only ADE devices wait; one that is not linked must not be left waiting forever.
        enqueue_command(session, device, DEVICE_CONFIGURED, {}, actor=actor, context=context)
        return
    if row.awaiting_configuration_at is None or row.configured_command_uuid is not None:
        row.awaiting_configuration_at = clock.now()
        row.configured_command_uuid = None
    advance_configuration(session, device, actor, context=context)


def advance_configuration(session: Session, device: Device, actor: Actor, *, context: CommandContext) -> None:
    """Queue DeviceConfigured once none of the setup commands is still pending."""
    row = _ade_row_of(session, device)
    if row is None or row.awaiting_configuration_at is None or row.configured_command_uuid is not None:
        return
    pending = session.scalar(
        select(func.count())
        .select_from(Command)
        .where(
            Command.device_id == device.id,
            Command.request_type.in_(SETUP_COMMANDS),
            Command.status.in_(CommandStatus.PENDING),
        )
    )
    if pending:
        return
    failed = session.scalar(
        select(func.count())
        .select_from(Command)
        .where(
            Command.device_id == device.id,
            Command.request_type.in_(SETUP_COMMANDS),
            Command.status == CommandStatus.ERROR,
            Command.queued_at >= row.awaiting_configuration_at,
        )
    )
    command = enqueue_command(session, device, DEVICE_CONFIGURED, {}, actor=actor, context=context)
    row.configured_command_uuid = command.uuid
    record_event(
        session,
        actor,
        "ade.configuration_finished",
        "device",
        device.id,
        {"command": command.uuid, "failed_installs": failed or 0},
    )


def after_answer(
    session: Session, device: Device, command: Command, actor: Actor, *, context: CommandContext
) -> None:
    """COMMAND_ANSWERED: a setup command answered may let Setup Assistant finish."""
    if command.request_type in SETUP_COMMANDS:
        advance_configuration(session, device, actor, context=context)
    elif command.request_type == DEVICE_CONFIGURED and command.status == CommandStatus.ACKNOWLEDGED:
        row = _ade_row_of(session, device)
        if row is not None:
            row.awaiting_configuration_at = None
