"""The device CAs are cached per process (issue 18) without trusting less or more than the
database and the CA file say: a built-in CA generation added by another process is trusted at the
first certificate it issued, and an edited HIKESHI_DEVICE_CA_FILE is read again."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from mdm.ground import ca as ca_service
from mdm.ground.config import Settings
from mdm.ground.identity.signature import UntrustedCertificate
from mdm.ground.identity.trust import issued_by_builtin_ca, verify_device_certificate
from mdm.ground.models import CertificateAuthority, CertificatePurpose
from mdm.ground.x509util import fingerprint, to_pem
from tests.support.pki import issue_cert, make_ca, rsa_key, write_pem


def test_a_new_builtin_generation_is_trusted_at_its_first_certificate(
    provisioned_ca: ca_service.Credential, enroll_settings: Settings, session: Session
) -> None:
    first, _ = issue_cert(
        provisioned_ca.certificate, provisioned_ca.private_key, "ipad-old", key=rsa_key("ipad-old")
    )
    assert verify_device_certificate(session, enroll_settings, first) == provisioned_ca.certificate
    # Another process adds a generation (what `hikeshi ca rotate` writes): this process has the
    # first one cached.
    new_ca, new_key = make_ca("Hikeshi Device CA gen 2")
    session.add(
        CertificateAuthority(
            purpose=CertificatePurpose.DEVICE_CA,
            generation=2,
            subject=new_ca.subject.rfc4514_string(),
            fingerprint_sha256=fingerprint(new_ca),
            not_before=new_ca.not_valid_before_utc,
            not_after=new_ca.not_valid_after_utc,
            cert_pem=to_pem(new_ca),
            key_sealed=b"not used here",
        )
    )
    session.commit()
    second, _ = issue_cert(new_ca, new_key, "ipad-new", key=rsa_key("ipad-new"))
    assert verify_device_certificate(session, enroll_settings, second) == new_ca
    assert issued_by_builtin_ca(session, enroll_settings, second)
    assert issued_by_builtin_ca(session, enroll_settings, second, new_ca)  # the issuer found above
    stranger, stranger_key = make_ca("Not ours")
    forged, _ = issue_cert(stranger, stranger_key, "ipad-forged", key=rsa_key("ipad-forged"))
    with pytest.raises(UntrustedCertificate):
        verify_device_certificate(session, enroll_settings, forged)


def test_an_edited_ca_file_is_read_again(
    tmp_path: Path, provisioned_ca: ca_service.Credential, enroll_settings: Settings, session: Session
) -> None:
    ca_a, key_a = make_ca("External CA A")
    ca_b, key_b = make_ca("External CA B")
    path = write_pem(tmp_path / "device-ca.pem", ca_a)
    settings = replace(enroll_settings, device_ca_file=str(path))
    from_a, _ = issue_cert(ca_a, key_a, "ipad-a", key=rsa_key("ipad-a"))
    from_b, _ = issue_cert(ca_b, key_b, "ipad-b", key=rsa_key("ipad-b"))
    assert verify_device_certificate(session, settings, from_a) == ca_a
    assert not issued_by_builtin_ca(session, settings, from_a)
    assert not issued_by_builtin_ca(session, settings, from_a, ca_a)

    write_pem(path, ca_b)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a later edit
    assert verify_device_certificate(session, settings, from_b) == ca_b
    with pytest.raises(UntrustedCertificate):
        verify_device_certificate(session, settings, from_a)
