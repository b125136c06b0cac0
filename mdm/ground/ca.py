"""The built-in certificate authority that issues device identities, and the profile signer.

Both are created on first start (`ensure_ca`): an RSA 3072 root CA, and a separate RSA signing
certificate issued by it for enrollment profiles, so the CA key signs only certificates and SCEP
replies. The private keys are stored sealed with the instance secret (mdm.ground.secretbox), each under
its own purpose label; the certificates are public.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import SYSTEM, Actor, record_event
from mdm.ground.config import Settings
from mdm.ground.models import CertificateAuthority, CertificatePurpose
from mdm.ground.secretbox import seal, unseal
from mdm.ground.x509util import fingerprint, to_pem

CA_KEY_BITS = 3072
SIGNER_KEY_BITS = 2048
CA_VALIDITY = timedelta(days=20 * 365 + 5)
SIGNER_VALIDITY = timedelta(days=3 * 365)
# A signer this close to expiry is replaced by a new generation on the next start.
SIGNER_RENEW_BEFORE = timedelta(days=60)
# Certificates start a little in the past so a device whose clock runs slow still accepts them.
BACKDATE = timedelta(minutes=10)

KEY_PURPOSES = {
    CertificatePurpose.DEVICE_CA: "enrollment-ca-key",
    CertificatePurpose.PROFILE_SIGNING: "profile-signing-key",
}


class CANotReady(RuntimeError):
    """The built-in CA has not been created yet (the server creates it on first start)."""


@dataclass(frozen=True)
class Credential:
    """A certificate with its private key, unsealed for one use."""

    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey
    record_id: int


@dataclass(frozen=True)
class CertificateSummary:
    purpose: str
    generation: int
    subject: str
    fingerprint_sha256: str
    not_before: datetime
    not_after: datetime


def _key_usage(*, digital_signature: bool, key_encipherment: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization[:64] or "Hikeshi MDM"),
        ]
    )


def build_ca_certificate(key: rsa.RSAPrivateKey, organization: str, now: datetime) -> x509.Certificate:
    # A short random suffix tells the CAs of different installations (test, production) apart.
    name = _name(f"Hikeshi Device CA {secrets.token_hex(4).upper()}", organization)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        # digitalSignature: the CA key signs SCEP replies; keyEncipherment: SCEP clients encrypt
        # their requests to the CA certificate (no separate RA).
        .add_extension(
            _key_usage(digital_signature=True, key_encipherment=True, cert_sign=True), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def build_signer_certificate(
    ca: Credential, key: rsa.RSAPrivateKey, organization: str, now: datetime
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(_name("Hikeshi Profile Signing", organization))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + SIGNER_VALIDITY, ca.certificate.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(digital_signature=True, key_encipherment=False, cert_sign=False), critical=True
        )
        # S/MIME signing is what CMS verifiers (openssl cms, profile installers) check for.
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.CODE_SIGNING]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(ca_key_identifier(ca.certificate), critical=False)
        .sign(ca.private_key, hashes.SHA256())
    )


def ca_key_identifier(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def issue_device_identity(
    ca: Credential, public_key: PublicKeyTypes, common_name: str, *, days: int
) -> x509.Certificate:
    """A client-authentication certificate for a device key, valid `days` from now."""
    if not isinstance(public_key, rsa.RSAPublicKey) or public_key.key_size < 2048:
        raise ValueError("device keys must be RSA of at least 2048 bits")
    now = clock.now()
    not_after = min(now + timedelta(days=days), ca.certificate.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64] or "device")]))
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(digital_signature=True, key_encipherment=True, cert_sign=False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(ca_key_identifier(ca.certificate), critical=False)
        .sign(ca.private_key, hashes.SHA256())
    )


# -- storage -------------------------------------------------------------------------------------


def _key_der(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _store(
    session: Session,
    settings: Settings,
    purpose: str,
    generation: int,
    cert: x509.Certificate,
    key: rsa.RSAPrivateKey,
) -> CertificateAuthority:
    row = CertificateAuthority(
        purpose=purpose,
        generation=generation,
        subject=cert.subject.rfc4514_string()[:512],
        fingerprint_sha256=fingerprint(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        cert_pem=to_pem(cert),
        key_sealed=seal(settings.secret_key, KEY_PURPOSES[purpose], _key_der(key)),
        created_at=clock.now(),
    )
    session.add(row)
    # Flushing here makes a concurrent creator of the same generation fail on the unique
    # constraint now, before anything else of this transaction is written.
    session.flush()
    return row


def active_record(session: Session, purpose: str) -> CertificateAuthority | None:
    return session.scalars(
        select(CertificateAuthority)
        .where(CertificateAuthority.purpose == purpose)
        .order_by(CertificateAuthority.generation.desc())
        .limit(1)
    ).first()


def ensure_ca(
    session: Session,
    settings: Settings,
    *,
    actor: Actor = SYSTEM,
    ca_key: rsa.RSAPrivateKey | None = None,
    signer_key: rsa.RSAPrivateKey | None = None,
) -> list[str]:
    """Create the CA and the profile signer when missing (or the signer when near expiry).

    Idempotent. Two processes racing here both try the same (purpose, generation) row; the loser
    gets an IntegrityError from the flush and should roll back and look again. Returns the
    purposes created. `ca_key`/`signer_key` let a caller supply pre-generated keys.
    """
    created: list[str] = []
    now = clock.now()
    ca_row = active_record(session, CertificatePurpose.DEVICE_CA)
    if ca_row is None:
        key = ca_key or rsa.generate_private_key(public_exponent=65537, key_size=CA_KEY_BITS)
        cert = build_ca_certificate(key, settings.organization_name, now)
        ca_row = _store(session, settings, CertificatePurpose.DEVICE_CA, 1, cert, key)
        record_event(
            session,
            actor,
            "ca.created",
            "certificate_authority",
            ca_row.id,
            {"purpose": ca_row.purpose, "subject": ca_row.subject, "fingerprint": ca_row.fingerprint_sha256},
        )
        created.append(CertificatePurpose.DEVICE_CA)
    signer_row = active_record(session, CertificatePurpose.PROFILE_SIGNING)
    if signer_row is None or signer_row.not_after - now <= SIGNER_RENEW_BEFORE:
        ca = _credential(settings, ca_row)
        key = signer_key or rsa.generate_private_key(public_exponent=65537, key_size=SIGNER_KEY_BITS)
        cert = build_signer_certificate(ca, key, settings.organization_name, now)
        generation = 1 if signer_row is None else signer_row.generation + 1
        signer_row = _store(session, settings, CertificatePurpose.PROFILE_SIGNING, generation, cert, key)
        record_event(
            session,
            actor,
            "ca.created",
            "certificate_authority",
            signer_row.id,
            {
                "purpose": signer_row.purpose,
                "generation": generation,
                "subject": signer_row.subject,
                "fingerprint": signer_row.fingerprint_sha256,
            },
        )
        created.append(CertificatePurpose.PROFILE_SIGNING)
    return created


def _credential(settings: Settings, row: CertificateAuthority) -> Credential:
    key_der = unseal(settings.secret_key, KEY_PURPOSES[row.purpose], row.key_sealed)
    key = _load_key(key_der)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CANotReady(f"stored {row.purpose} key is not an RSA key")
    return Credential(_load_cert(row.cert_pem), key, row.id)


# Loading an RSA private key checks it (a 3072-bit CA key: tens of milliseconds, far more on a busy
# machine), and every signed profile or SCEP answer loads the CA or signer key: loaded once per
# process. The sealed row is still unsealed (and so authenticated) at every use.
@lru_cache(maxsize=16)
def _load_key(key_der: bytes) -> PrivateKeyTypes:
    return serialization.load_der_private_key(key_der, password=None)


@lru_cache(maxsize=64)
def _load_cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def load_credential(session: Session, settings: Settings, purpose: str) -> Credential:
    row = active_record(session, purpose)
    if row is None:
        raise CANotReady(
            "the built-in CA has not been created yet; start the server or run `hikeshi ca init`"
        )
    return _credential(settings, row)


def device_ca(session: Session, settings: Settings) -> Credential:
    return load_credential(session, settings, CertificatePurpose.DEVICE_CA)


def profile_signer(session: Session, settings: Settings) -> Credential:
    return load_credential(session, settings, CertificatePurpose.PROFILE_SIGNING)


def device_ca_certificate(session: Session) -> x509.Certificate:
    """The active CA certificate (no key), or CANotReady."""
    row = active_record(session, CertificatePurpose.DEVICE_CA)
    if row is None:
        raise CANotReady("the built-in CA has not been created yet")
    return _load_cert(row.cert_pem)


def builtin_device_cas(session: Session, settings: Settings) -> list[x509.Certificate]:
    """Every generation of the built-in device CA: device identities chain to one of them."""
    rows = session.scalars(
        select(CertificateAuthority.cert_pem)
        .where(CertificateAuthority.purpose == CertificatePurpose.DEVICE_CA)
        .order_by(CertificateAuthority.generation.desc())
    ).all()
    return [_load_cert(pem) for pem in rows]


def ca_summary(session: Session) -> list[CertificateSummary]:
    """The active CA and profile signer, for `hikeshi ca show` and the console."""
    out = []
    for purpose in CertificatePurpose.ALL:
        row = active_record(session, purpose)
        if row is not None:
            out.append(
                CertificateSummary(
                    row.purpose,
                    row.generation,
                    row.subject,
                    row.fingerprint_sha256,
                    row.not_before,
                    row.not_after,
                )
            )
    return out


def sha1_fingerprint(cert: x509.Certificate) -> bytes:
    """The CA fingerprint form Apple's SCEP payload (CAFingerprint) compares against."""
    return cert.fingerprint(hashes.SHA1())  # noqa: S303 - identification only, as Apple specifies
