"""Who is speaking on the Android agent channel: the device bound to the request's certificate.

The door (mdm.doors.android.auth) reads what a request presents into a credential; this module
decides whether it is an enrolled Android device:

- a signed request (the agent's identity key over the method, path, a timestamp, a nonce and the
  SHA-256 of the body): the certificate is the recorded one its fingerprint names, the signature
  must verify with its key, the timestamp may be at most the configured skew in the past and a
  small skew in the future, and each nonce is accepted once (stored in the database, so every
  server process sees it): a captured request cannot be replayed;
- behind a TLS-terminating proxy, the client certificate the proxy forwarded.

Either way the certificate must chain to a trusted device CA, be valid now, be recorded, bound to
exactly one Android device, and not be revoked. The device is taken from that binding, never from
anything the request says, so a device can never act as another (DESIGN.md invariant 3).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import Table, bindparam, delete, insert, select
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, load_only
from sqlalchemy.sql import Select

from commands.delivery import NOT_LOOKED, more_than_one_waiting, waiting_command
from mdm.ground import clock
from mdm.ground.config import Settings
from mdm.ground.db import is_postgres
from mdm.ground.device_rows import note_device_row_held
from mdm.ground.identity.signature import SignatureError, SignatureMismatch, verify_with_certificate
from mdm.ground.identity.trust import verify_device_certificate
from mdm.ground.models import (
    AgentRequestNonce,
    Command,
    Device,
    DeviceCertificate,
    DeviceFacts,
    EnrollmentState,
    IdentityPurpose,
)
from mdm.ground.x509util import fingerprint
from mdm.services.android_channel.agent import PLATFORM, ProtocolError
from mdm.services.android_channel.policy_basis import CURRENT_GENERATION
from mdm.services.inventory.facts import keep_facts


class Unauthenticated(ProtocolError):
    def __init__(self, reason: str, code: str = "invalid_credentials") -> None:
        # The full reason is logged; the agent learns a stable reason code (body "reason"), enough
        # to fix its clock or its nonces, nothing about other devices.
        super().__init__(401, "unauthenticated", "device authentication failed")
        self.reason = reason
        self.reason_code = code


@dataclass(frozen=True)
class SignedRequest:
    """A request signed with an agent's identity key, as its headers say."""

    fingerprint: str  # SHA-256 of the certificate, lower-case hex
    sent_at: datetime
    nonce: str
    signature: bytes
    signed: bytes  # what the signature must cover (the protocol's signing string)


@dataclass(frozen=True)
class ForwardedCertificate:
    """The client certificate a TLS-terminating proxy verified and forwarded."""

    certificate: x509.Certificate


Credential = SignedRequest | ForwardedCertificate


@dataclass(frozen=True)
class AuthenticatedDevice:
    device: Device
    certificate: DeviceCertificate
    # What a sync's identity read carries beside the device (lock_device): the policy generation
    # (policy_basis), and the command that waits first (commands.delivery.waiting_command: None
    # when nothing waits). Not read otherwise (None, NOT_LOOKED).
    policy_generation: int | None = None
    waiting: Command | None = NOT_LOOKED
    more_waiting: bool = True  # more than `waiting` (commands.delivery.more_than_one_waiting)


def authenticate(
    session: Session,
    settings: Settings,
    credential: Credential,
    *,
    lock_device: bool = False,
    with_facts: bool = False,
) -> AuthenticatedDevice:
    """The enrolled Android device this credential speaks for, or Unauthenticated / ProtocolError.
    A signed request's nonce is remembered in the session: the caller commits it with the request.
    `lock_device`: hold the device row (PostgreSQL) until commit, taken before the request writes
    any of its commands (commands.delivery: the device row comes first). `with_facts` (with
    `lock_device`): the same read brings the device's facts, for a sync that merges an inventory
    (mdm.services.inventory.facts.keep_facts)."""
    if isinstance(credential, SignedRequest):
        found, cert = _signed_request(session, settings, credential, lock_device, with_facts)
    else:
        cert = credential.certificate
        found = _recorded(session, fingerprint(cert), lock_device, with_facts)
    row, device = found.certificate, found.device
    try:
        verify_device_certificate(session, settings, cert)
    except SignatureError as exc:
        raise Unauthenticated(str(exc)) from exc
    if row.revoked_at is not None:
        raise Unauthenticated("certificate has been revoked", "certificate_revoked")
    if row.purpose != IdentityPurpose.ANDROID_AGENT:
        raise Unauthenticated(
            f"a {row.purpose} certificate is not an Android agent identity", "certificate_purpose"
        )
    if device is None or device.platform != PLATFORM:
        raise Unauthenticated("certificate is not bound to an Android device")
    if device.enrollment_state != EnrollmentState.ENROLLED:
        raise ProtocolError(
            403, "device_not_enrolled", f"the device is {device.enrollment_state}; enroll it again"
        )
    if found.facts is not None:
        keep_facts(session, found.facts)
    return AuthenticatedDevice(device, row, found.policy_generation, found.waiting, found.more_waiting)


_RECORDED = (
    select(DeviceCertificate, Device)
    .outerjoin(Device, Device.id == DeviceCertificate.device_id)
    .where(DeviceCertificate.fingerprint_sha256 == bindparam("fingerprint"))
    .limit(1)
)
# The device row cannot be locked on the nullable side of an outer join: a certificate bound to a
# device is read by an inner join, the rest (refused below) by _RECORDED. The lock comes with the
# read that finds the certificate to check the signature with, so a forged request naming a known
# fingerprint holds the row until it is refused, moments later: no longer than a real sync does,
# and without the statement a lock after the check would add to every sync. A sync's read also
# carries what the sync needs next, so that one with nothing to do asks nothing more (issue 18):
# the policy generation, the command that waits first and whether another waits too.
_WAITING, _WAITING_ON, _WAITING_READ = waiting_command(Device.id, offer_not_now=True)
_LOCKED_READ = (
    select(DeviceCertificate, Device, CURRENT_GENERATION, _WAITING, more_than_one_waiting(Device.id))
    .join(Device, Device.id == DeviceCertificate.device_id)
    .outerjoin(_WAITING, _WAITING_ON)
    # The certificate's columns a sync reads: its PEM only the first time a process meets it
    # (`_certificate_of`); a request's CPU goes to each column it reads back (issue 18).
    .options(
        load_only(
            DeviceCertificate.id,
            DeviceCertificate.fingerprint_sha256,
            DeviceCertificate.device_id,
            DeviceCertificate.purpose,
            DeviceCertificate.revoked_at,
        ),
        *_WAITING_READ,
    )
    .where(DeviceCertificate.fingerprint_sha256 == bindparam("fingerprint"))
    .limit(1)
    .with_for_update(of=Device, key_share=True)
)
# A sync with an inventory: its facts too (none before the first inventory).
_LOCKED_READ_WITH_FACTS = _LOCKED_READ.add_columns(DeviceFacts).outerjoin(
    DeviceFacts, DeviceFacts.device_id == Device.id
)


# On PostgreSQL the read also remembers a signed request's nonce, in a data-modifying WITH: one
# statement where there were two on every request (issue 18). The nonce is written before the
# signature is checked, but a request refused for any reason is rolled back (doors.android.http
# `_refused`) and leaves nothing; the unique index still decides between concurrent requests
# (ON CONFLICT waits for the first one's commit), and a nonce seen before is refused as replayed
# only once the signature has verified, in the same order as on SQLite.
_REMEMBERED = (
    postgres_insert(cast(Table, AgentRequestNonce.__table__))
    .from_select(
        ["nonce", "device_certificate_id", "seen_at", "expires_at"],
        select(
            bindparam("nonce", type_=AgentRequestNonce.__table__.c.nonce.type),
            DeviceCertificate.id,
            bindparam("seen_at", type_=AgentRequestNonce.__table__.c.seen_at.type),
            bindparam("expires_at", type_=AgentRequestNonce.__table__.c.expires_at.type),
        ).where(DeviceCertificate.fingerprint_sha256 == bindparam("fingerprint")),
    )
    .on_conflict_do_nothing(index_elements=["nonce"])
    .returning(AgentRequestNonce.__table__.c.id)
    .cte("remembered_nonce")
)
_NONCE_IS_NEW = select(_REMEMBERED.c.id).exists().label("nonce_is_new")


# Each read, built once, by (lock the device, with its facts, remember the nonce).
_READS: dict[tuple[bool, bool, bool], Select[*tuple[Any, ...]]] = {
    (lock, facts, remember): read.add_columns(_NONCE_IS_NEW) if remember else read
    for lock, facts, read in (
        (False, False, _RECORDED),
        (True, False, _LOCKED_READ),
        (True, True, _LOCKED_READ_WITH_FACTS),
    )
    for remember in (False, True)
}


@dataclass(frozen=True)
class _Recorded:
    certificate: DeviceCertificate
    device: Device | None
    policy_generation: int | None = None
    waiting: Command | None = NOT_LOOKED
    more_waiting: bool = True  # more than `waiting` (commands.delivery.more_than_one_waiting)
    facts: DeviceFacts | None = None
    # Whether the read itself remembered the request's nonce (True), found it seen before
    # (False), or was not asked to (None: `_remember_nonce` does it after the signature check).
    nonce_is_new: bool | None = None


@dataclass(frozen=True)
class _NonceToRemember:
    nonce: str
    seen_at: datetime
    expires_at: datetime


def _recorded(
    session: Session,
    fp: str,
    lock_device: bool = False,
    with_facts: bool = False,
    nonce: _NonceToRemember | None = None,
) -> _Recorded:
    """The certificate's row and the device it is bound to, in one statement; on PostgreSQL,
    given a nonce, that statement remembers it too."""
    remember = nonce is not None and is_postgres(session)
    values: dict[str, Any] = {"fingerprint": fp}
    if remember and nonce is not None:
        values.update(nonce=nonce.nonce, seen_at=nonce.seen_at, expires_at=nonce.expires_at)
    if lock_device:
        locked = session.execute(_READS[True, with_facts, remember], values).first()
        if locked is not None:
            note_device_row_held(session, locked[1].id)
            return _Recorded(
                locked[0],
                locked[1],
                policy_generation=locked[2],
                waiting=locked[3],
                more_waiting=locked[4],
                facts=locked[5] if with_facts else None,
                nonce_is_new=locked[-1] if remember else None,
            )
        # Not bound to a device: refused (`authenticate`), whatever its nonce. The plain read
        # finds why, and must not remember the nonce a second time.
        remember = False
    found = session.execute(_READS[False, False, remember], values).first()
    if found is None:
        raise Unauthenticated("unknown certificate")
    return _Recorded(found[0], found[1], nonce_is_new=found[2] if remember else None)


_PARSED_LIMIT = 4096
_parsed: dict[str, x509.Certificate] = {}
_parsed_lock = threading.Lock()


def _certificate_of(row: DeviceCertificate) -> x509.Certificate:
    """The row's certificate, parsed once per process, not at every sync: a recorded certificate
    never changes, and its fingerprint names it. The PEM is read (one statement) only then."""
    cert = _parsed.get(row.fingerprint_sha256)
    if cert is None:
        cert = x509.load_pem_x509_certificate(row.pem.encode())
        if fingerprint(cert) != row.fingerprint_sha256:
            raise Unauthenticated("the recorded certificate does not match its fingerprint")
        with _parsed_lock:  # the server's threads share it
            if len(_parsed) >= _PARSED_LIMIT:
                _parsed.pop(next(iter(_parsed)))  # the oldest: a bound, not a cache policy
            _parsed[row.fingerprint_sha256] = cert
    return cert


def _signed_request(
    session: Session, settings: Settings, request: SignedRequest, lock_device: bool, with_facts: bool
) -> tuple[_Recorded, x509.Certificate]:
    _check_sent_at(
        request.sent_at,
        settings.android_signature_max_skew_seconds,
        settings.android_signature_future_skew_seconds,
    )
    forget_at = request.sent_at + timedelta(seconds=settings.android_signature_max_skew_seconds)
    nonce = _NonceToRemember(request.nonce, clock.now(), forget_at)
    found = _recorded(session, request.fingerprint, lock_device, with_facts, nonce)
    row = found.certificate
    cert = _certificate_of(row)
    try:
        verify_with_certificate(cert, request.signature, request.signed, hashes.SHA256())
    except SignatureMismatch as exc:
        raise Unauthenticated("signature does not match the request", "bad_signature") from exc
    except SignatureError as exc:
        raise Unauthenticated(str(exc)) from exc
    if found.nonce_is_new is False:
        raise Unauthenticated(f"nonce {request.nonce} was already used", "replayed")
    if found.nonce_is_new is None and found.device is not None:
        # (An unbound certificate's request is refused by `authenticate`: no statement for it.)
        _remember_nonce(session, row, nonce)
    return found, cert


def _check_sent_at(sent: datetime, past_skew: int, future_skew: int) -> None:
    age = (clock.now() - sent).total_seconds()
    if age > past_skew:
        # Bounds how long a nonce must be remembered, and catches a wrong device clock.
        raise Unauthenticated("request timestamp is too old", "timestamp_too_old")
    if -age > future_skew:
        # A request dated ahead would stay replayable longer than the window says.
        raise Unauthenticated("request timestamp is in the future", "timestamp_in_future")


def _remember_nonce(session: Session, row: DeviceCertificate, nonce: _NonceToRemember) -> None:
    """Accept a nonce once. The unique index decides between server processes: a concurrent
    replay waits for the first request's commit and then fails here."""
    # Past its expiry the timestamp check refuses a replay on its own: the scheduler's
    # agent_nonce_purge forgets expired ones every minute, not every sync. A statement, not an
    # object to flush: nothing reads the row back, and the flush cost more than the INSERT.
    values = {
        "nonce": nonce.nonce,
        "device_certificate_id": row.id,
        "seen_at": nonce.seen_at,
        "expires_at": nonce.expires_at,
    }
    try:
        session.execute(_REMEMBER_NONCE, values)
    except IntegrityError as exc:
        raise Unauthenticated(f"nonce {nonce.nonce} was already used", "replayed") from exc


_REMEMBER_NONCE = insert(cast(Table, AgentRequestNonce.__table__))


def purge_expired_nonces(session: Session) -> int:
    """Scheduler job: drop every nonce whose request could no longer pass the timestamp check."""
    result = session.execute(delete(AgentRequestNonce).where(AgentRequestNonce.expires_at < clock.now()))
    return int(getattr(result, "rowcount", 0) or 0)
