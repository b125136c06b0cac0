"""Small certificate helpers shared by every layer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

T = TypeVar("T")


def fingerprint(cert: x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the DER certificate."""
    return cert.fingerprint(hashes.SHA256()).hex()


def to_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode()


# cryptography refuses a certificate claiming an X.509 version it does not know with
# InvalidVersion, which is not a ValueError: where a caller turns ValueError into a 4xx, such bytes
# (and requests) from a device or a SCEP client were answered with a 500. These loaders fail with
# ValueError only.
def _read(load: Callable[[bytes], T], data: bytes) -> T:
    try:
        return load(data)
    except x509.InvalidVersion as exc:
        raise ValueError(f"not a readable certificate or request: {exc}") from exc


def load_der_certificate(data: bytes) -> x509.Certificate:
    return _read(x509.load_der_x509_certificate, data)


def load_pem_certificate(data: bytes) -> x509.Certificate:
    return _read(x509.load_pem_x509_certificate, data)


def load_der_csr(data: bytes) -> x509.CertificateSigningRequest:
    return _read(x509.load_der_x509_csr, data)


def load_pem_csr(data: bytes) -> x509.CertificateSigningRequest:
    return _read(x509.load_pem_x509_csr, data)


def load_pem_bundle(data: bytes) -> list[x509.Certificate]:
    return _read(x509.load_pem_x509_certificates, data)


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether `ca` signed `cert` directly (names match and the signature verifies)."""
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def issued_by_allowing_sha1(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """issued_by, also for a SHA-1 signature, which cryptography's own check refuses. Only for
    Apple's device CA chain: its CAs (2007) and the device certificates under them, which every
    ADE iPad still presents, are RSA with SHA-1; everything Hikeshi issues itself uses issued_by."""
    if cert.issuer != ca.subject:
        return False
    key = ca.public_key()
    parameters = cert.signature_algorithm_parameters
    try:
        if isinstance(key, rsa.RSAPublicKey) and isinstance(parameters, padding.PKCS1v15):
            algorithm = cert.signature_hash_algorithm
            if algorithm is None:
                return False
            key.verify(cert.signature, cert.tbs_certificate_bytes, parameters, algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(parameters, ec.ECDSA):
            key.verify(cert.signature, cert.tbs_certificate_bytes, parameters)
        else:
            return issued_by(cert, ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def self_signed_encryption_certificate(
    key: rsa.RSAPrivateKey, name: x509.Name, *, now: datetime, days: int, data_encipherment: bool = False
) -> x509.Certificate:
    """A certificate of our own key for a service to encrypt its answer to (Apple's ABM server
    token, a push-certificate signing service's answer): only this instance can open what comes."""
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=data_encipherment,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
