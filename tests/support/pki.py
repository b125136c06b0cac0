"""A small test PKI built with `cryptography`: CAs, leaf certificates, PEM helpers.

Keys are RSA 2048 and cached per *label* for the life of the process (generation is the slow
part), so the same label always gives the same key and different labels give different keys.
By default a certificate's key label comes from its role and common name, so:

* `make_ca("Test CA")` twice gives two CA certificates sharing one key;
* an impostor CA "with the same name but another key" needs `key=rsa_key("impostor")`.

Validity starts one hour before `mdm.ground.clock.now()` (the real time unless a test froze the clock),
so certificates made under `frozen_clock` are valid at the frozen instant; TLS (OpenSSL) checks
real time, so tests doing TLS should not freeze the clock before making their certificates.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mdm.ground import clock

Certificate = x509.Certificate
PrivateKey = rsa.RSAPrivateKey

__all__ = [
    "issue_cert",
    "key_pem",
    "make_ca",
    "make_server_cert",
    "pem",
    "rsa_key",
    "write_pem",
]


@functools.cache  # lru_cache without a bound: a label must never get a second key
def rsa_key(label: str) -> PrivateKey:
    """The RSA 2048 key for `label`, generated once per process."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _validity(not_before: datetime | None, days: int) -> tuple[datetime, datetime]:
    start = not_before if not_before is not None else clock.now() - timedelta(hours=1)
    return start, start + timedelta(days=days)


def _ski(key: PrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def make_ca(
    common_name: str, *, key: PrivateKey | None = None, days: int = 3650, not_before: datetime | None = None
) -> tuple[Certificate, PrivateKey]:
    """A self-signed root CA (basicConstraints CA:TRUE, critical; keyCertSign and cRLSign)."""
    key = key if key is not None else rsa_key(f"ca:{common_name}")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start, end = _validity(not_before, days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(_ski(key), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_cert(
    ca_cert: Certificate,
    ca_key: PrivateKey,
    common_name: str,
    *,
    key: PrivateKey | None = None,
    days: int = 365,
    not_before: datetime | None = None,
    extended_key_usage: Sequence[x509.ObjectIdentifier] | None = None,
    uid: str | None = None,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
) -> tuple[Certificate, PrivateKey]:
    """An end-entity certificate signed by `ca_cert`/`ca_key`.

    `uid` adds the X.509 UID (0.9.2342.19200300.100.1.1) attribute to the subject, as in APNs
    push certificates, whose subject UID is the push topic. `extended_key_usage` is a list of
    OIDs (e.g. `[ExtendedKeyUsageOID.CLIENT_AUTH]`); None leaves the extension out.
    `dns_names`/`ip_addresses` fill subjectAltName. The key defaults to `rsa_key("leaf:<cn>")`.
    """
    key = key if key is not None else rsa_key(f"leaf:{common_name}")
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if uid is not None:
        attributes.insert(0, x509.NameAttribute(NameOID.USER_ID, uid))
    start, end = _validity(not_before, days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(_ski(key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if extended_key_usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(extended_key_usage)), critical=False)
    alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_server_cert(
    ca: Certificate,
    ca_key: PrivateKey,
    hostnames: Sequence[str] = ("localhost",),
    ips: Sequence[str] = ("127.0.0.1",),
    *,
    key: PrivateKey | None = None,
) -> tuple[Certificate, PrivateKey]:
    """A TLS server certificate (serverAuth) for `hostnames` and `ips`, CN = the first name."""
    common_name = hostnames[0] if hostnames else ips[0]
    return issue_cert(
        ca,
        ca_key,
        common_name,
        key=key if key is not None else rsa_key(f"server:{common_name}"),
        extended_key_usage=[ExtendedKeyUsageOID.SERVER_AUTH],
        dns_names=hostnames,
        ip_addresses=ips,
    )


def pem(cert: Certificate) -> bytes:
    """The certificate as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKeyTypes) -> bytes:
    """The private key (any type) as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_pem(path: str | os.PathLike[str], *objs: Certificate | PrivateKeyTypes | bytes) -> Path:
    """Write certificates, keys and/or PEM bytes, concatenated in order, to `path` and return it.

    A file holding a private key is created with mode 0600.
    """
    path = Path(path)
    chunks: list[bytes] = []
    secret = False
    for obj in objs:
        if isinstance(obj, x509.Certificate):
            chunks.append(pem(obj))
        elif isinstance(obj, bytes):
            chunks.append(obj)
            secret = secret or b"PRIVATE KEY" in obj
        elif hasattr(obj, "private_bytes"):
            chunks.append(key_pem(obj))
            secret = True
        else:
            raise TypeError(f"cannot write {type(obj).__name__} as PEM")
    mode = 0o600 if secret else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # an existing file keeps its old mode through O_CREAT
    with os.fdopen(fd, "wb") as handle:
        handle.write(b"".join(chunks))
    return path
