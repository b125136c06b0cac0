"""The built-in CA: created once (also under concurrent starts), key sealed, signer issued by it."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from mdm.ground import ca as ca_service
from mdm.ground.config import Settings
from mdm.ground.identity.trust import trusted_device_cas
from mdm.ground.models import AuditEvent, CertificateAuthority, CertificatePurpose
from mdm.ground.secretbox import SecretBoxError
from mdm.ground.x509util import fingerprint


def test_first_start_creates_ca_and_signer(enroll_settings: Settings, session: Session) -> None:
    from mdm import create_app

    app = create_app(enroll_settings)
    try:
        rows = session.scalars(select(CertificateAuthority).order_by(CertificateAuthority.id)).all()
        assert [(r.purpose, r.generation) for r in rows] == [("device-ca", 1), ("profile-signing", 1)]
        ca_cert = ca_service.device_ca_certificate(session)
        key = ca_cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 3072
        constraints = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert constraints.ca is True
        signer = ca_service.profile_signer(session, enroll_settings).certificate
        signer.verify_directly_issued_by(ca_cert)
        assert not signer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        # A second start finds them and creates nothing.
        second = create_app(enroll_settings)
        second.extensions["hikeshi"].engine.dispose()
        assert len(session.scalars(select(CertificateAuthority)).all()) == 2
        created = session.scalars(select(AuditEvent).where(AuditEvent.action == "ca.created")).all()
        assert len(created) == 2
    finally:
        app.extensions["hikeshi"].engine.dispose()


def test_key_is_sealed_with_the_instance_secret(
    provisioned_ca: ca_service.Credential, enroll_settings: Settings, session: Session
) -> None:
    row = ca_service.active_record(session, CertificatePurpose.DEVICE_CA)
    assert row is not None
    der = provisioned_ca.private_key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    assert der not in row.key_sealed and der[40:80] not in row.key_sealed
    other = Settings(
        instance_path=enroll_settings.instance_path,
        database_url=enroll_settings.database_url,
        secret_key="another-instance-secret",
    )
    with pytest.raises(SecretBoxError):
        ca_service.device_ca(session, other)
    # The signer key has its own purpose label: the CA key cannot be unsealed as it.
    signer_row = ca_service.active_record(session, CertificatePurpose.PROFILE_SIGNING)
    assert signer_row is not None
    row.key_sealed, saved = signer_row.key_sealed, row.key_sealed
    with pytest.raises(SecretBoxError):
        ca_service.device_ca(session, enroll_settings)
    row.key_sealed = saved
    session.rollback()


def test_concurrent_first_starts_create_one_ca(enroll_settings: Settings, engine: Engine) -> None:
    from mdm.ground.db import make_session_factory
    from mdm.roots.app import provision_builtin_ca

    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def start() -> None:
        factory = make_session_factory(engine)
        barrier.wait()
        try:
            provision_builtin_ca(factory, enroll_settings)
        except BaseException as exc:  # the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    factory = make_session_factory(engine)
    with factory() as s:
        rows = s.scalars(select(CertificateAuthority)).all()
        assert sorted(r.purpose for r in rows) == ["device-ca", "profile-signing"]


def test_device_trust_uses_the_builtin_ca(
    provisioned_ca: ca_service.Credential, enroll_settings: Settings, session: Session
) -> None:
    trusted = trusted_device_cas(session, enroll_settings)
    assert [fingerprint(c) for c in trusted] == [fingerprint(provisioned_ca.certificate)]
    summary = {s.purpose: s for s in ca_service.ca_summary(session)}
    assert summary["device-ca"].fingerprint_sha256 == fingerprint(provisioned_ca.certificate)
    assert summary["device-ca"].not_after == provisioned_ca.certificate.not_valid_after_utc


def test_signer_is_renewed_near_expiry(
    provisioned_ca: ca_service.Credential, enroll_settings: Settings, session: Session, frozen_clock: Any
) -> None:
    old = ca_service.profile_signer(session, enroll_settings).certificate
    frozen_clock.current = old.not_valid_after_utc - ca_service.SIGNER_RENEW_BEFORE
    assert ca_service.ensure_ca(session, enroll_settings) == ["profile-signing"]
    new = ca_service.profile_signer(session, enroll_settings).certificate
    assert fingerprint(new) != fingerprint(old)
    assert ca_service.active_record(session, CertificatePurpose.PROFILE_SIGNING).generation == 2  # type: ignore[union-attr]
    assert ca_service.ensure_ca(session, enroll_settings) == []
    session.rollback()


def test_device_identity_certificate(provisioned_ca: ca_service.Credential) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = ca_service.issue_device_identity(provisioned_ca, key.public_key(), "Hikeshi device X", days=365)
    cert.verify_directly_issued_by(provisioned_ca.certificate)
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 365
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in usage
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="2048"):
        ca_service.issue_device_identity(provisioned_ca, small.public_key(), "weak", days=1)
