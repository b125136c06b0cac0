"""The CSRs agents send (enrollment identity, Wi-Fi key pairs): PEM or base64 DER PKCS#10."""

from __future__ import annotations

import base64
import binascii

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from enrollment.issuance import BadCertificateRequest, check_csr
from mdm.ground.x509util import load_der_csr, load_pem_csr
from mdm.services.android_channel.agent import ProtocolError


def load_csr(text: str, field: str = "csr") -> x509.CertificateSigningRequest:
    """A checked CSR (signature valid, RSA ≥ 2048), or 400 naming `field`."""
    try:
        if "-----BEGIN" in text:
            csr = load_pem_csr(text.encode())
        else:
            csr = load_der_csr(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, binascii.Error) as exc:
        raise ProtocolError(
            400, "bad_request", f"{field}: not a PEM or base64 DER PKCS#10 request", field
        ) from exc
    try:
        check_csr(csr)
    except BadCertificateRequest as exc:
        raise ProtocolError(400, "bad_request", f"{field}: {exc}", field) from exc
    return csr


def same_key(csr: x509.CertificateSigningRequest, certificate_pem: str) -> bool:
    """Whether the CSR is for the key of this certificate."""
    cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(csr.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki))
