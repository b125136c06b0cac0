"""Issuing device identities: what the SCEP handler asks for once a request is authenticated.

Every issued certificate is recorded as a DeviceCertificate at once, with its purpose: through an
enrollment challenge it is an MDM identity carrying the token (and the device is bound when it
authenticates); through a renewal challenge or a RenewalReq it is an MDM identity bound to the
renewing device immediately, so mdm.services.devices.identify_device accepts it on the device's next request
without a new Authenticate; through a Wi-Fi challenge it is a Wi-Fi certificate, which never opens
/mdm/* (mdm.services.devices refuses any purpose but mdm_identity there).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session

from enrollment.tokens import ChallengeRejected, record_token_use, redeem_challenge
from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.ca import Credential, builtin_device_cas, device_ca, issue_device_identity
from mdm.ground.config import Settings
from mdm.ground.models import AdeEnrollment, ChallengePurpose, Device, DeviceCertificate, IdentityPurpose
from mdm.ground.x509util import fingerprint, issued_by
from mdm.services.devices import certificate_row_for

MIN_KEY_BITS = 2048


class BadCertificateRequest(ValueError):
    """The CSR itself is unacceptable (bad signature, weak or non-RSA key)."""


class RenewalRefused(PermissionError):
    """A RenewalReq whose signer is not a valid, bound identity issued by the built-in CA."""


@dataclass(frozen=True)
class IssuedIdentity:
    certificate: x509.Certificate
    row: DeviceCertificate


def check_csr(csr: x509.CertificateSigningRequest) -> None:
    if not csr.is_signature_valid:
        raise BadCertificateRequest("the CSR signature does not verify")
    key = csr.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise BadCertificateRequest("the CSR key must be RSA")
    if key.key_size < MIN_KEY_BITS:
        raise BadCertificateRequest(f"the CSR key must be at least {MIN_KEY_BITS} bits")


def _common_name(csr: x509.CertificateSigningRequest) -> str:
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    text = value if isinstance(value, str) else value.decode("utf-8", "replace")
    return "".join(ch for ch in text if ch.isprintable())[:64] or "Hikeshi device"


def _issue(
    session: Session, settings: Settings, ca: Credential, csr: x509.CertificateSigningRequest, *, purpose: str
) -> IssuedIdentity:
    check_csr(csr)
    cert = issue_device_identity(ca, csr.public_key(), _common_name(csr), days=settings.identity_cert_days)
    row = certificate_row_for(cert, purpose=purpose)
    session.add(row)
    return IssuedIdentity(cert, row)


def issue_with_challenge(
    session: Session,
    settings: Settings,
    csr: x509.CertificateSigningRequest,
    challenge_secret: str,
    *,
    actor: Actor,
) -> IssuedIdentity:
    """PKCSReq: redeem the single-use challenge and issue an identity for the CSR's key.

    Raises ChallengeRejected or BadCertificateRequest; the caller must then roll back, since a
    token use may already have been taken in this transaction.
    """
    check_csr(csr)
    challenge = redeem_challenge(session, challenge_secret)
    ca = device_ca(session, settings)
    wifi = challenge.purpose == ChallengePurpose.WIFI
    purpose = IdentityPurpose.WIFI if wifi else IdentityPurpose.MDM_IDENTITY
    issued = _issue(session, settings, ca, csr, purpose=purpose)
    row = issued.row
    details: dict[str, object] = {"purpose": challenge.purpose, "certificate_purpose": purpose}
    if challenge.purpose == ChallengePurpose.ENROLL:
        row.enrollment_token_id = challenge.token_id
        details["enrollment_token_id"] = challenge.token_id
    elif challenge.purpose == ChallengePurpose.ADE:
        # Bound at its Authenticate, like an enrollment; the link lets that Authenticate (and only
        # for the UDID Apple vouched for) replace the identity of a wiped ADE tablet.
        enrollment = session.scalars(
            select(AdeEnrollment).where(AdeEnrollment.challenge_id == challenge.id)
        ).first()
        if enrollment is None:
            raise ChallengeRejected("the ADE enrollment of this challenge no longer exists")
        session.flush()
        enrollment.device_certificate_id = row.id
        details["ade_enrollment_id"] = enrollment.id
    elif challenge.purpose == ChallengePurpose.WIFI:
        # Recorded (and revocable) but never bound: a Wi-Fi certificate must not authenticate
        # on the MDM channel, nor count as the identity the renewal job watches. Its holder is
        # recorded so a lost tablet's Wi-Fi access can be revoked.
        row.holder_device_id = challenge.device_id
        details["device_id"] = challenge.device_id
    else:
        device = session.get(Device, challenge.device_id) if challenge.device_id else None
        if device is None:
            raise ChallengeRejected("the device this renewal was for no longer exists")
        row.device_id = device.id
        row.bound_at = clock.now()
        details["device_id"] = device.id
    session.flush()
    if challenge.purpose == ChallengePurpose.ENROLL:
        record_token_use(session, challenge, row, actor=actor)
    audit_identity_issued(session, actor, row, details)
    return issued


def renew_with_identity(
    session: Session,
    settings: Settings,
    csr: x509.CertificateSigningRequest,
    signer: x509.Certificate,
    *,
    actor: Actor,
) -> IssuedIdentity:
    """RenewalReq: the request is signed with the device's current identity; issue its successor."""
    check_csr(csr)
    now = clock.now()
    if not any(issued_by(signer, ca) for ca in builtin_device_cas(session, settings)):
        raise RenewalRefused("the signing certificate was not issued by the built-in CA")
    if not signer.not_valid_before_utc <= now <= signer.not_valid_after_utc:
        raise RenewalRefused("the signing certificate is expired or not yet valid")
    current = session.scalars(
        select(DeviceCertificate).where(DeviceCertificate.fingerprint_sha256 == fingerprint(signer))
    ).first()
    if current is None or current.device_id is None:
        raise RenewalRefused("the signing certificate is not bound to an enrolled device")
    if current.revoked_at is not None:
        raise RenewalRefused("the signing certificate has been revoked")
    if current.purpose != IdentityPurpose.MDM_IDENTITY:
        # A Wi-Fi or agent certificate must not buy an MDM identity.
        raise RenewalRefused(f"a {current.purpose} certificate cannot renew an MDM identity")
    ca = device_ca(session, settings)
    issued = _issue(session, settings, ca, csr, purpose=IdentityPurpose.MDM_IDENTITY)
    issued.row.device_id = current.device_id
    issued.row.bound_at = now
    issued.row.enrollment_token_id = current.enrollment_token_id
    session.flush()
    audit_identity_issued(
        session,
        actor,
        issued.row,
        {
            "purpose": "renewal_request",
            "certificate_purpose": IdentityPurpose.MDM_IDENTITY,
            "device_id": current.device_id,
            "previous": current.fingerprint_sha256,
        },
    )
    return issued


def audit_identity_issued(
    session: Session, actor: Actor, row: DeviceCertificate, details: dict[str, object]
) -> None:
    """The audit event of an identity issued (SCEP, renewal, the Android agent's enrollment):
    `details` say for what, the certificate's own facts are added here."""
    record_event(
        session,
        actor,
        "enrollment.identity_issued",
        "device_certificate",
        row.id,
        {
            **details,
            "fingerprint": row.fingerprint_sha256,
            "subject": row.subject,
            "not_after": row.not_after.isoformat(),
        },
    )
