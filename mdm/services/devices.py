"""Device lifecycle on the Apple check-in channel: identity binding, Authenticate, TokenUpdate,
CheckOut. Called by the thin handlers in mdm/doors/apple; never commits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property, lru_cache
from typing import Any, Protocol, TypeVar

from cryptography import x509
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.device_rows import note_device_row_held
from mdm.ground.hooks import HookPoint
from mdm.ground.models import (
    AdeEnrollment,
    Alert,
    Device,
    DeviceCertificate,
    DeviceMessage,
    EnrollmentState,
    IdentityPurpose,
    Severity,
    SpareDevice,
)
from mdm.ground.secretbox import seal
from mdm.ground.x509util import fingerprint, to_pem
from mdm.services.alerts.service import raise_alert

IDENTITY_CONFLICT_ALERT = "device.identity_conflict"
# An allowance to bind a new identity is for a tablet in hand, not a standing exception.
MAX_REENROLL_HOURS = 168


class DeviceIdentityError(PermissionError):
    """The certificate presented may not speak for this device (answered 401)."""


class IdentityRefused(PermissionError):
    """An authentic certificate that may not open this door or speak for this UDID (403, reason)."""


class IdentityConflict(IdentityRefused):
    """An Authenticate for an existing device from a certificate not bound to it.

    Raised before anything is written; the boundary rolls back and records it with
    `record_identity_conflict` in a transaction of its own (alert + audit, nothing on the device).
    """

    def __init__(
        self,
        reason: str,
        *,
        udid: str,
        device_id: int,
        presented: PresentedIdentity,
        row: DeviceCertificate | None,
        bound: list[str],
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.udid = udid
        self.device_id = device_id
        self.presented_fingerprint = presented.fingerprint
        self.presented_subject = presented.certificate.subject.rfc4514_string()[:512]
        self.presented_issuer = presented.certificate.issuer.rfc4514_string()[:512]
        self.presented_purpose = row.purpose if row is not None else None
        self.presented_token_id = row.enrollment_token_id if row is not None else None
        self.presented_bound_device_id = row.device_id if row is not None else None
        self.bound = bound


class UserChannelRefused(PermissionError):
    """A message on a user channel (Mac user, Shared iPad user): declined with 410, as NanoMDM does."""


class CheckinMessageError(ValueError):
    """A check-in message lacks a required key or has the wrong type; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class PresentedIdentity:
    """The verified certificate behind a device request, and whether the built-in CA issued it."""

    certificate: x509.Certificate
    from_builtin_ca: bool

    @cached_property
    def fingerprint(self) -> str:
        # Read several times a request (the identity read, the result's evidence): hashed once.
        return fingerprint(self.certificate)


# Keys that only user-channel messages carry (Apple's check-in schema: UserID and UserShortName on
# Shared iPad and macOS user channels; UserLongName, EnrollmentUserID and NotOnConsole on macOS).
USER_CHANNEL_KEYS = ("UserID", "UserShortName", "UserLongName", "EnrollmentUserID", "NotOnConsole")


def is_user_channel(message: dict[str, Any]) -> bool:
    return any(message.get(key) not in (None, "") for key in USER_CHANNEL_KEYS)


def refuse_user_channel(message: dict[str, Any]) -> None:
    """Hikeshi manages the device channel only; a user channel never touches its token or queue."""
    if is_user_channel(message):
        raise UserChannelRefused("user channel not supported")


# Services that react to a device finishing enrollment (first TokenUpdate), and to a new identity
# binding (placing the device in its token's unit): connected by the wiring (mdm.roots.wiring).
EnrolledHook = Callable[[Session, Device, Actor], None]
DEVICE_ENROLLED: HookPoint[EnrolledHook] = HookPoint("device enrolled")
BoundHook = Callable[[Session, Device, DeviceCertificate, Actor], None]
IDENTITY_BOUND: HookPoint[BoundHook] = HookPoint("identity bound")
# A TokenUpdate with AwaitingConfiguration (an ADE device in Setup Assistant), after the
# enrollment hooks queued its profiles.
AWAITING_CONFIGURATION: HookPoint[EnrolledHook] = HookPoint("awaiting configuration")


def on_enrolled(fn: EnrolledHook) -> EnrolledHook:
    """Marks `fn` as written for DEVICE_ENROLLED, for the reader only: it registers nothing, the
    wiring connects it."""
    return fn


def on_identity_bound(fn: BoundHook) -> BoundHook:
    """Marks `fn` as written for IDENTITY_BOUND, for the reader only: the wiring connects it."""
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


def _certificate_row(session: Session, fp: str, *, lock: bool = False) -> DeviceCertificate | None:
    stmt = select(DeviceCertificate).where(DeviceCertificate.fingerprint_sha256 == fp)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


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


def mdm_identity_row(
    session: Session, identity: PresentedIdentity, *, lock: bool = False
) -> DeviceCertificate | None:
    """The recorded row of a certificate presented on /mdm/*, if it may open that door at all.

    None only for an identity from an external CA (HIKESHI_DEVICE_CA_FILE) never seen before:
    Hikeshi records every certificate its own CA issues, so one from the built-in CA without a
    row was not issued by this server (a restored database, a stolen CA key) and is refused.
    """
    return _presented_row(identity, _certificate_row(session, identity.fingerprint, lock=lock))


class CertificateStanding(Protocol):
    """What the identity checks read of a certificate's row: a DeviceCertificate, or the few
    columns of it the identity read carries."""

    device_id: int | None
    purpose: str
    revoked_at: datetime | None


_Standing = TypeVar("_Standing", bound=CertificateStanding)


def _presented_row(identity: PresentedIdentity, row: _Standing | None) -> _Standing | None:
    if row is None:
        if identity.from_builtin_ca:
            raise DeviceIdentityError("certificate from the built-in CA was never issued by this server")
        return None
    if row.revoked_at is not None:
        raise DeviceIdentityError("certificate has been revoked")
    return row


def identify_device(session: Session, identity: PresentedIdentity, udid: str) -> Device:
    """The device this certificate is bound to, which must be the one named by the UDID.

    Raises DeviceIdentityError (401) or IdentityRefused (403) before anything is written otherwise.
    """
    return identify_device_with(session, identity, udid)[0]


# An outer join the identity read may carry for its caller: an entity (or alias), its ON clause,
# which may name Device (the device the UDID names), and the loader options that narrow what is
# read of it (load_only: each column read back costs CPU on every request).
Alongside = tuple[Any, Any, tuple[Any, ...]]


# The certificate's columns the identity read carries: its id says whether there is a row.
_STANDING = (
    DeviceCertificate.id,
    DeviceCertificate.device_id,
    DeviceCertificate.purpose,
    DeviceCertificate.revoked_at,
)


@lru_cache(maxsize=32)
def _identity_read(alongside: tuple[Alongside, ...], lock_device: bool) -> Any:
    """The identity read's statement, built once per shape (`alongside` tuples that stay the same
    object, as module constants do): building it costs more CPU than running it."""
    # One statement on every device request: the device the UDID names, with the certificate's
    # row beside it (joined on the fingerprint, not on the device, so a certificate bound to
    # another device is still found and refused below). An unknown UDID takes the two lookups.
    # When the device is a spare swapped into a unit, the swap's time comes along: its first
    # check-in after the swap must be written down however recently it was seen (touch).
    # The certificate as the columns its checks read (not an entity): a request's CPU goes to each
    # column it reads back (issue 18).
    stmt = (
        select(Device, *_STANDING, SpareDevice.swapped_at, *(entity for entity, _on, _options in alongside))
        .select_from(Device)
        .outerjoin(DeviceCertificate, DeviceCertificate.fingerprint_sha256 == bindparam("fingerprint"))
        .outerjoin(SpareDevice, SpareDevice.device_id == Device.id)
    )
    for entity, on, options in alongside:
        stmt = stmt.outerjoin(entity, on).options(*options)
    stmt = stmt.where(Device.udid == bindparam("udid")).limit(1)
    if lock_device:
        # FOR NO KEY UPDATE OF devices: rows that reference the device (results, events) stay free.
        stmt = stmt.with_for_update(of=Device, key_share=True)
    return stmt


def identify_device_with(
    session: Session,
    identity: PresentedIdentity,
    udid: str,
    alongside: tuple[Alongside, ...] = (),
    params: dict[str, Any] | None = None,
    *,
    lock_device: bool = False,
) -> tuple[Device, tuple[Any, ...]]:
    """`identify_device`, with the rows `alongside` names read in the same statement (None where
    the outer join found nothing): what the request needs next (its next command, the facts an
    inventory answer merges into), so a device request pays one statement for who it is and that.

    Nothing of `alongside` is returned for a request that is refused. `params`: the values of the
    bound parameters `alongside` names. `lock_device`: hold the device row (PostgreSQL) until
    commit, for a request that may write it after it wrote its commands (see connect).
    """
    found = session.execute(
        _identity_read(alongside, lock_device),
        {"fingerprint": identity.fingerprint, "udid": udid, **(params or {})},
    ).first()
    extra: tuple[Any, ...] = ()
    row: CertificateStanding | None
    if found is None:
        row = mdm_identity_row(session, identity)
        device = None
    else:
        device, certificate_id, *_ = found
        swapped_at, *rest = found[len(_STANDING) + 1 :]
        extra = tuple(rest)
        row = _presented_row(identity, found if certificate_id is not None else None)
        session.info.setdefault(_SWAPPED_AT, {})[device.id] = swapped_at
        if lock_device:
            note_device_row_held(session, device.id)
    if device is None:
        raise DeviceIdentityError("unknown device: it must Authenticate first")
    if row is None or row.device_id != device.id:
        raise DeviceIdentityError("certificate is not bound to this device")
    if row.purpose != IdentityPurpose.MDM_IDENTITY:
        raise IdentityRefused(f"a {row.purpose} certificate is not an MDM identity")
    if device.enrollment_state == EnrollmentState.RETIRED:
        # Its identities were erased with it: whoever still holds one is not the tablet.
        raise IdentityRefused("the device was wiped; it must enroll again")
    return device, extra


def bound_identities(session: Session, device: Device) -> list[DeviceCertificate]:
    """The device's unrevoked identity certificates (a renewal leaves two until one expires)."""
    return list(
        session.scalars(
            select(DeviceCertificate)
            .where(DeviceCertificate.device_id == device.id, DeviceCertificate.revoked_at.is_(None))
            .order_by(DeviceCertificate.id)
        )
    )


def reenroll_allowed(device: Device, at: datetime | None = None) -> bool:
    until = device.reenroll_allowed_until
    return until is not None and until > (at or clock.now())


def _rebind_reason(device: Device) -> str | None:
    """Why this UDID may take a new identity now, or None: the rule of DESIGN invariant 3."""
    if device.enrollment_state in EnrollmentState.REBINDABLE:
        return device.enrollment_state
    if reenroll_allowed(device):
        return "reenroll_allowed"
    return None


def _ade_enrollment_for(session: Session, row: DeviceCertificate, udid: str) -> bool:
    enrollment = session.scalars(
        select(AdeEnrollment).where(AdeEnrollment.device_certificate_id == row.id)
    ).first()
    return enrollment is not None and enrollment.udid == udid


def check_can_authenticate(
    session: Session, identity: PresentedIdentity, udid: str
) -> tuple[DeviceCertificate | None, Device | None, str | None]:
    """Decide, before writing anything, whether this Authenticate may proceed.

    Returns (row, device, rebind_reason); raises DeviceIdentityError, IdentityRefused or
    IdentityConflict (an existing enrolled or pending device named by a certificate not its own).
    """
    # Locked (PostgreSQL) until commit: two Authenticates racing for one certificate or one UDID
    # are decided one after the other, so neither can bind what the other just bound.
    row = mdm_identity_row(session, identity, lock=True)
    device = session.scalars(select(Device).where(Device.udid == udid).with_for_update()).first()
    bound = [r.fingerprint_sha256 for r in bound_identities(session, device)] if device else []

    def conflict(reason: str, target: Device) -> IdentityConflict:
        return IdentityConflict(
            reason, udid=udid, device_id=target.id, presented=identity, row=row, bound=bound
        )

    protected = device is not None and device.enrollment_state in (
        EnrollmentState.ENROLLED,
        EnrollmentState.PENDING,
    )
    if device is not None and device.platform != "apple":
        reason = f"the UDID belongs to an {device.platform} device"
        if protected:
            raise conflict(reason, device)
        raise IdentityRefused(reason)
    if row is not None and row.purpose != IdentityPurpose.MDM_IDENTITY:
        reason = f"a {row.purpose} certificate is not an MDM identity"
        if protected and device is not None:
            raise conflict(reason, device)
        raise IdentityRefused(reason)
    if row is not None and row.device_id is not None:
        if device is not None and row.device_id == device.id:
            if device.enrollment_state == EnrollmentState.RETIRED:
                raise IdentityRefused("the device was wiped; it must enroll again with a new identity")
            return row, device, None
        owner = session.get(Device, row.device_id)
        target = device if device is not None else owner
        reason = "certificate is bound to another device"
        if target is not None:
            raise conflict(reason, target)
        raise IdentityRefused(reason)
    if row is not None and row.bound_at is not None:
        raise IdentityRefused("certificate was bound before and cannot be bound again")
    if device is None:
        return row, None, None
    rebind = _rebind_reason(device)
    if rebind is None and row is not None and _ade_enrollment_for(session, row, udid):
        # Issued through an enrollment whose machine info Apple signed for this very UDID: the
        # tablet itself, erased and enrolling again (a QR code or a claimed UDID never gets here).
        rebind = "ade_reenrollment"
    if rebind is None:
        raise conflict(
            f"the device is {device.enrollment_state} with another identity; "
            "an administrator must allow re-enrollment",
            device,
        )
    return row, device, rebind


def authenticate(
    session: Session,
    identity: PresentedIdentity,
    message: dict[str, Any],
    raw: bytes,
    source_ip: str | None,
) -> Device:
    """Authenticate: bind the identity certificate to the UDID and record what the device is.

    A certificate is bound at the first Authenticate it makes, once; a UDID already enrolled (or
    pending) takes a new one only after its CheckOut, after its wipe, or while an administrator
    allows it (Device.reenroll_allowed_until). Then its old identities are revoked.
    """
    udid = require_string(message, "UDID", 128)
    row, device, rebind = check_can_authenticate(session, identity, udid)
    actor = device_actor(udid, source_ip)
    now = clock.now()
    created = device is None
    if device is None:
        device = Device(udid=udid, platform="apple", created_at=now)
        session.add(device)
    _apply_facts(device, message)
    previous_state = device.enrollment_state
    if created or previous_state in EnrollmentState.REBINDABLE or rebind is not None:
        # A new identity for the UDID is a new enrollment (the device lost what MDM installed):
        # its TokenUpdate enrolls it again and the enrollment hooks reinstall its unit's profiles.
        device.enrollment_state = EnrollmentState.PENDING
    device.last_seen_at = now
    session.flush()
    if row is None:
        row = certificate_row_for(identity.certificate, purpose=IdentityPurpose.MDM_IDENTITY)
        session.add(row)
    newly_bound = row.device_id != device.id
    if newly_bound and rebind is not None:
        _revoke_for_rebinding(session, device, row, rebind, actor)
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
        for hook in IDENTITY_BOUND.hooks(session):
            hook(session, device, row, actor)
    return device


def _revoke_for_rebinding(
    session: Session, device: Device, new_row: DeviceCertificate, reason: str, actor: Actor
) -> None:
    now = clock.now()
    revoked = []
    for old in bound_identities(session, device):
        if old.id != new_row.id:
            old.revoked_at = now
            revoked.append(old.fingerprint_sha256)
    allowed_by = device.reenroll_allowed_by if reason == "reenroll_allowed" else None
    device.reenroll_allowed_until = None
    device.reenroll_allowed_by = None
    record_event(
        session,
        actor,
        "device.identity_rebound",
        "device",
        device.id,
        {
            "reason": reason,
            "allowed_by": allowed_by,
            "certificate": new_row.fingerprint_sha256,
            "revoked_certificates": revoked,
        },
    )


def record_identity_conflict(session: Session, conflict: IdentityConflict, source_ip: str | None) -> None:
    """Audit a refused identity conflict and alert administrators (once per open alert and
    certificate, so a device retrying does not flood the console). Writes nothing on the device."""
    details: dict[str, Any] = {
        "udid": conflict.udid,
        "reason": conflict.reason,
        "presented_certificate": conflict.presented_fingerprint,
        "presented_subject": conflict.presented_subject,
        "presented_issuer": conflict.presented_issuer,
        "presented_purpose": conflict.presented_purpose,
        "presented_enrollment_token_id": conflict.presented_token_id,
        "presented_bound_device_id": conflict.presented_bound_device_id,
        "bound_certificates": conflict.bound,
        "source_ip": source_ip,
    }
    record_event(
        session,
        device_actor(conflict.udid, source_ip),
        "device.identity_conflict",
        "device",
        conflict.device_id,
        details,
    )
    device = session.get(Device, conflict.device_id)
    if device is None:
        return
    already = session.scalars(
        select(Alert).where(
            Alert.kind == IDENTITY_CONFLICT_ALERT,
            Alert.device_id == device.id,
            Alert.acknowledged_at.is_(None),
        )
    ).all()
    if any(a.details.get("presented_certificate") == conflict.presented_fingerprint for a in already):
        return
    name = device.device_name or device.serial_number or conflict.udid
    raise_alert(
        session,
        IDENTITY_CONFLICT_ALERT,
        Severity.CRITICAL,
        f"端末識別情報の衝突: {name} に紐付かない証明書からの登録を拒否しました / "
        f"Identity conflict: an Authenticate for {name} from a certificate not bound to it was refused",
        device=device,
        details=details,
    )


def allow_reenroll(session: Session, device: Device, *, hours: int, actor: Actor) -> Device:
    """Let this UDID bind a new identity within `hours` (an administrator's decision, audited)."""
    if not 1 <= hours <= MAX_REENROLL_HOURS:
        raise ValueError(f"hours must be between 1 and {MAX_REENROLL_HOURS}")
    device.reenroll_allowed_until = clock.now() + timedelta(hours=hours)
    device.reenroll_allowed_by = actor.name
    record_event(
        session,
        actor,
        "device.reenroll_allowed",
        "device",
        device.id,
        {"until": device.reenroll_allowed_until.isoformat(), "hours": hours},
    )
    return device


def certificate_row_for(cert: x509.Certificate, *, purpose: str) -> DeviceCertificate:
    if purpose not in IdentityPurpose.ALL:
        raise ValueError(f"unknown certificate purpose {purpose!r}")
    return DeviceCertificate(
        fingerprint_sha256=fingerprint(cert),
        subject=cert.subject.rfc4514_string()[:512],
        issuer=cert.issuer.rfc4514_string()[:512],
        serial_hex=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        pem=to_pem(cert),
        purpose=purpose,
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
        ("IMEI", "imei", 32),
        ("MEID", "meid", 32),
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
        for hook in DEVICE_ENROLLED.hooks(session):
            hook(session, device, actor)
    if message.get("AwaitingConfiguration") is True:
        for hook in AWAITING_CONFIGURATION.hooks(session):
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


# A device checking in again within this long is not written down again: "seen" moves in steps
# this large, which nothing that reads it (readiness: minutes; compliance: hours) can tell apart,
# and an empty check-in writes nothing.
SEEN_RESOLUTION = timedelta(seconds=60)


_SWAPPED_AT = "hikeshi.devices.swapped_at"  # session.info: {device id: spare swap time}, by identify_device


def read_as_no_swapped_spare(session: Session, device_id: int) -> bool:
    """Whether this transaction's identity read found the device and it is no spare swapped into
    a unit: then a check-in of it, seen lately, cannot change any unit's readiness."""
    swaps = session.info.get(_SWAPPED_AT, {})
    return device_id in swaps and swaps[device_id] is None


def touch(session: Session, device: Device) -> None:
    """Note that `device` was seen now (on a request identify_device authenticated)."""
    now = clock.now()
    seen = device.last_seen_at
    swapped_at = session.info.get(_SWAPPED_AT, {}).get(device.id)
    if (
        seen is None
        or not (now - SEEN_RESOLUTION < seen <= now)
        or (swapped_at is not None and seen <= swapped_at)
    ):
        device.last_seen_at = now


def device_for_identity(session: Session, identity: PresentedIdentity) -> Device:
    """The device an authenticated MDM identity is bound to, for a request whose body cannot be
    read for its UDID (an answer too large to parse). Never matched by anything the body claims."""
    row = mdm_identity_row(session, identity)
    device = session.get(Device, row.device_id) if row is not None and row.device_id is not None else None
    if row is None or device is None:
        raise DeviceIdentityError("certificate is not bound to a device")
    if row.purpose != IdentityPurpose.MDM_IDENTITY:
        raise IdentityRefused(f"a {row.purpose} certificate is not an MDM identity")
    if device.enrollment_state == EnrollmentState.RETIRED:
        raise IdentityRefused("the device was wiped; it must enroll again")
    return device
