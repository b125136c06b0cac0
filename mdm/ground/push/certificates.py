"""The APNs push certificate: import (PEM or PKCS#12), storage encrypted at rest, expiry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import PushCertificate
from mdm.ground.secretbox import seal, unseal
from mdm.ground.x509util import fingerprint, load_pem_bundle, to_pem

KEY_PURPOSE = "apns-push-key"
EXPIRY_WARNING = timedelta(days=30)
MDM_TOPIC_PREFIX = "com.apple.mgmt."


class PushCertificateError(ValueError):
    """The file is not a usable push certificate; the message says why."""


class TopicChangeRefused(PushCertificateError):
    """The new certificate's topic differs from the current one."""


@dataclass(frozen=True)
class LoadedPushCertificate:
    cert: x509.Certificate
    key_pem: bytes
    topic: str


def read_push_certificate(data: bytes, password: bytes | None = None) -> LoadedPushCertificate:
    """Parse a PEM (certificate and key) or PKCS#12 file and read its topic (the subject UID)."""
    cert: x509.Certificate | None = None
    key = None
    if b"-----BEGIN" in data:
        try:
            cert = load_pem_bundle(data)[0]
        except ValueError as exc:
            raise PushCertificateError("no certificate found in the PEM file") from exc
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except (ValueError, TypeError) as exc:
            raise PushCertificateError(
                "no readable private key in the PEM file (wrong password, or key missing)"
            ) from exc
    else:
        try:
            key, cert, _extra = pkcs12.load_key_and_certificates(data, password)
        except ValueError as exc:
            raise PushCertificateError("not a PEM or PKCS#12 file, or the password is wrong") from exc
    if cert is None or key is None:
        raise PushCertificateError("the file must hold both the certificate and its private key")
    # Compared as SubjectPublicKeyInfo: defined for every key type (public_numbers is not).
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise PushCertificateError("the private key does not belong to the certificate")
    uids = cert.subject.get_attributes_for_oid(NameOID.USER_ID)
    if not uids:
        raise PushCertificateError(
            "the certificate has no UID (topic) in its subject: not an MDM push certificate"
        )
    topic = str(uids[0].value)
    if not topic.startswith(MDM_TOPIC_PREFIX):
        # A certificate for another service (an app's push topic) cannot wake devices for MDM,
        # and once active it would make the right one a "topic change" needing --force.
        raise PushCertificateError(
            f"the certificate's topic {topic} is not an MDM push topic (those start with "
            f"{MDM_TOPIC_PREFIX}): request an MDM push certificate at identity.apple.com"
        )
    if cert.not_valid_after_utc <= clock.now():
        raise PushCertificateError(
            f"the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}: renew it at identity.apple.com"
        )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return LoadedPushCertificate(cert=cert, key_pem=key_pem, topic=topic)


def active_push_certificate(session: Session) -> PushCertificate | None:
    return session.scalars(
        select(PushCertificate)
        .where(PushCertificate.active.is_(True))
        .order_by(PushCertificate.id.desc())
        .limit(1)
    ).first()


def import_push_certificate(
    session: Session,
    loaded: LoadedPushCertificate,
    *,
    secret_key: str,
    actor: Actor,
    force: bool = False,
) -> PushCertificate:
    """Store a (renewed) push certificate. A different topic would orphan every enrolled device,
    so it is refused unless forced."""
    current = active_push_certificate(session)
    if current is not None and current.topic != loaded.topic and not force:
        raise TopicChangeRefused(
            f"the new certificate's topic {loaded.topic} differs from the current {current.topic}: "
            "every enrolled device would stop receiving pushes and must be re-enrolled. Renew the "
            "existing certificate with Apple instead, or import with --force if you mean it."
        )
    if loaded.cert.not_valid_after_utc <= clock.now():
        raise PushCertificateError(f"the certificate expired on {loaded.cert.not_valid_after_utc:%Y-%m-%d}")
    if current is not None:
        current.active = False
    row = PushCertificate(
        topic=loaded.topic,
        subject=loaded.cert.subject.rfc4514_string()[:512],
        fingerprint_sha256=fingerprint(loaded.cert),
        not_before=loaded.cert.not_valid_before_utc,
        not_after=loaded.cert.not_valid_after_utc,
        cert_pem=to_pem(loaded.cert),
        key_encrypted=seal(secret_key, KEY_PURPOSE, loaded.key_pem),
        active=True,
        imported_at=clock.now(),
        imported_by=actor.name,
    )
    session.add(row)
    session.flush()
    record_event(
        session,
        actor,
        "push_certificate.imported",
        "push_certificate",
        row.id,
        {
            "topic": row.topic,
            "not_after": row.not_after.isoformat(),
            "fingerprint": row.fingerprint_sha256,
            "replaced_topic": current.topic if current else None,
            "forced": force and current is not None and current.topic != loaded.topic,
        },
    )
    return row


def decrypt_key(row: PushCertificate, secret_key: str) -> bytes:
    return unseal(secret_key, KEY_PURPOSE, row.key_encrypted)


def days_left(row: PushCertificate, at: datetime | None = None) -> int:
    return (row.not_after - (at or clock.now())).days


def expiry_warning(row: PushCertificate | None) -> str | None:
    """A sentence for operators when the certificate is missing, expired or expiring soon."""
    if row is None:
        return (
            "No APNs push certificate is installed: "
            "devices get commands only when they check in by themselves."
        )
    left = days_left(row)
    if left < 0:
        return f"The APNs push certificate ({row.topic}) expired on {row.not_after:%Y-%m-%d}. Renew it now."
    if row.not_after - clock.now() <= EXPIRY_WARNING:
        return (
            f"The APNs push certificate ({row.topic}) expires on {row.not_after:%Y-%m-%d}, in {left} days. "
            "Renew it (same Apple ID, same topic) before then."
        )
    return None
