"""A certificate revocation list signed by the built-in device CA.

RADIUS servers that accept the CA's EAP-TLS certificates read it (FreeRADIUS `check_crl`), so a
Wi-Fi certificate revoked here stops opening the station's network once they fetch the list."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from mdm.ground.ca import Credential, ca_key_identifier


def build_crl(
    ca: Credential,
    revoked: Iterable[tuple[int, datetime]],
    *,
    now: datetime,
    lifetime: timedelta,
    number: int,
) -> bytes:
    """DER CRL of (serial number, revocation time) pairs, valid from `now` for `lifetime`."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now)
        .next_update(now + lifetime)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(ca_key_identifier(ca.certificate), critical=False)
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca.private_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
