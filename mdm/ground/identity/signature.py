"""Verify the `Mdm-Signature` header: a detached CMS SignedData over the raw HTTP body.

A device sends it on every check-in and command request when the enrollment profile sets
SignMessage; it proves the body came from the holder of the device identity key. This module
answers only "which certificate signed this exact body" and "was that certificate issued by a CA we
trust"; binding the certificate to a UDID is the caller's job (DESIGN.md invariant 3).

asn1crypto parses the CMS structure; every digest and signature check is done by `cryptography`.
Error messages say what was wrong with the request without echoing parser internals.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from asn1crypto import cms
from asn1crypto import core as asn1
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from mdm.ground.x509util import load_der_certificate

# A CMS blob with the signer certificate (and perhaps a chain) is a few KiB; the cap keeps a
# hostile header from feeding megabytes to the ASN.1 parser.
MAX_SIGNATURE_BYTES = 64 * 1024

# A device signs every request with the same certificate: what the certificates it sends resolve
# to, whether a trusted CA issued that certificate and its public key depend on those bytes alone,
# so the last few thousand are remembered per process (issue 18: resolving them again was about
# 8% of a command request's CPU). Bounded: a larger fleet, or a sender of ever new certificates,
# only misses more, it never grows them. The signature over the body, validity dates, revocation
# and the binding to a device are still checked on every request.
REMEMBERED_CERTIFICATES = 2048

# iOS signs with SHA-1 (older releases) or SHA-256; the larger SHA-2 sizes cost nothing to allow.
_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

# signatureAlgorithm OID → (key type, hash named by the OID or None when only the key type is named).
_SIGNATURE_ALGORITHMS: dict[str, tuple[str, str | None]] = {
    "1.2.840.113549.1.1.1": ("rsa", None),  # rsaEncryption, what OpenSSL and Apple write
    "1.2.840.113549.1.1.5": ("rsa", "sha1"),
    "1.2.840.113549.1.1.11": ("rsa", "sha256"),
    "1.2.840.113549.1.1.12": ("rsa", "sha384"),
    "1.2.840.113549.1.1.13": ("rsa", "sha512"),
    "1.2.840.10045.2.1": ("ec", None),  # id-ecPublicKey, written by some CMS encoders
    "1.2.840.10045.4.1": ("ec", "sha1"),
    "1.2.840.10045.4.3.2": ("ec", "sha256"),
    "1.2.840.10045.4.3.3": ("ec", "sha384"),
    "1.2.840.10045.4.3.4": ("ec", "sha512"),
}


class SignatureError(Exception):
    """The request is not authenticated (HTTP 401); the message says why, safe to log."""

    http_status = 401


class SignatureMismatch(SignatureError):
    """A readable signature that the signer certificate's key does not verify over these bytes."""


class UntrustedCertificate(SignatureError):
    """The certificate is not directly issued by a trusted CA, or it or its CA is not valid now."""


def verify_mdm_signature(header_value: str, body: bytes) -> x509.Certificate:
    """The certificate whose key signed `body`, or SignatureError.

    Checks the signature only; call `verify_chain` for trust and validity dates.
    """
    der = _decode_header(header_value)
    try:
        signed_data = _load_signed_data(der)
        signer_info = _single_signer(signed_data)
        _check_encapsulated_content(signed_data, body)
        certificate = _signer_certificate(signed_data, signer_info)
        digest_name = signer_info["digest_algorithm"]["algorithm"].native
        signature_oid = signer_info["signature_algorithm"]["algorithm"].dotted
        signature = signer_info["signature"].native
        signed_attrs = signer_info["signed_attrs"]
        has_signed_attrs = not isinstance(signed_attrs, asn1.Void)
        signed_bytes = _signed_attributes_der(signed_attrs, body, digest_name) if has_signed_attrs else body
    except SignatureError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        # asn1crypto parses lazily: a malformed structure surfaces at first access, anywhere above.
        raise SignatureError("Mdm-Signature is not a well-formed CMS SignedData") from exc

    _verify_signature(certificate, signature_oid, digest_name, signature, signed_bytes)
    return certificate


def verify_mdm_signature_streamed(header_value: str, chunks: Iterable[bytes]) -> x509.Certificate:
    """As `verify_mdm_signature`, for a body too large to hold: hashed chunk by chunk as read.

    Only a detached signature qualifies (one carrying the content would itself be the body)."""
    der = _decode_header(header_value)
    try:
        signed_data = _load_signed_data(der)
        signer_info = _single_signer(signed_data)
        content = signed_data["encap_content_info"]["content"]
        if signed_data["encap_content_info"]["content_type"].native != "data":
            raise SignatureError("Mdm-Signature does not sign plain data")
        if not (isinstance(content, asn1.Void) or content.native is None):
            raise SignatureError("Mdm-Signature over a large body must be detached")
        certificate = _signer_certificate(signed_data, signer_info)
        digest_name = signer_info["digest_algorithm"]["algorithm"].native
        signature_oid = signer_info["signature_algorithm"]["algorithm"].dotted
        signature = signer_info["signature"].native
        signed_attrs = signer_info["signed_attrs"]
        has_signed_attrs = not isinstance(signed_attrs, asn1.Void)
    except SignatureError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise SignatureError("Mdm-Signature is not a well-formed CMS SignedData") from exc
    hasher = hashes.Hash(_digest_algorithm(digest_name))
    for chunk in chunks:
        hasher.update(chunk)
    body_digest = hasher.finalize()
    if has_signed_attrs:
        try:
            signed_bytes = _checked_signed_attributes(signed_attrs, body_digest)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
            raise SignatureError("Mdm-Signature is not a well-formed CMS SignedData") from exc
        _verify_signature(certificate, signature_oid, digest_name, signature, signed_bytes)
    else:
        _verify_signature(certificate, signature_oid, digest_name, signature, body_digest, prehashed=True)
    return certificate


def verify_chain(
    cert: x509.Certificate, trusted_cas: Sequence[x509.Certificate], at: datetime
) -> x509.Certificate:
    """The trusted CA that directly issued `cert`, checking both are valid at `at`.

    Only direct issuance is accepted: device identities come from the built-in CA (or one
    configured issuing CA), never through intermediates the device would have to send.
    """
    if at.tzinfo is None:
        raise ValueError("`at` must be timezone-aware")
    issuers = _issuing_cas(cert, tuple(trusted_cas))
    for ca in issuers:
        if not _valid_at(ca, at):
            continue  # another trusted CA with the same name and key (a renewal) may still be valid
        if not _valid_at(cert, at):
            raise UntrustedCertificate("certificate is expired or not yet valid")
        return ca
    if issuers:
        raise UntrustedCertificate("issuing CA is expired or not yet valid")
    raise UntrustedCertificate("certificate is not issued by a trusted CA")


@lru_cache(maxsize=REMEMBERED_CERTIFICATES)
def _issuing_cas(
    cert: x509.Certificate, trusted_cas: tuple[x509.Certificate, ...]
) -> tuple[x509.Certificate, ...]:
    """The CAs of `trusted_cas` that directly issued `cert` (name, CA flag and signature), in order:
    a function of the certificates alone, unlike their validity at a time."""
    issuers = []
    for ca in trusted_cas:
        if ca.subject != cert.issuer or not _is_ca(ca):
            continue
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        issuers.append(ca)
    return tuple(issuers)


def _decode_header(header_value: str) -> bytes:
    if not isinstance(header_value, str) or not header_value.strip():
        raise SignatureError("Mdm-Signature header is missing or empty")
    compact = "".join(header_value.split())  # tolerate folded or wrapped base64
    if len(compact) > MAX_SIGNATURE_BYTES * 4 // 3 + 4:
        raise SignatureError("Mdm-Signature header is too large")
    try:
        der = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("Mdm-Signature header is not valid base64") from exc
    if not der:
        raise SignatureError("Mdm-Signature header is missing or empty")
    return der


def _load_signed_data(der: bytes) -> cms.SignedData:
    content_info = cms.ContentInfo.load(der, strict=True)
    if content_info["content_type"].native != "signed_data":
        raise SignatureError("Mdm-Signature is not a CMS SignedData")
    signed_data = content_info["content"]
    if not isinstance(signed_data, cms.SignedData):
        raise SignatureError("Mdm-Signature is not a CMS SignedData")
    return signed_data


def _single_signer(signed_data: cms.SignedData) -> cms.SignerInfo:
    signer_infos = signed_data["signer_infos"]
    if len(signer_infos) != 1:
        raise SignatureError("Mdm-Signature must have exactly one signer")
    return signer_infos[0]


def _check_encapsulated_content(signed_data: cms.SignedData, body: bytes) -> None:
    encap = signed_data["encap_content_info"]
    if encap["content_type"].native != "data":
        raise SignatureError("Mdm-Signature does not sign plain data")
    content = encap["content"]
    if isinstance(content, asn1.Void) or content.native is None:
        return  # detached, as devices send it
    if not hmac.compare_digest(content.native, body):
        raise SignatureError("Mdm-Signature carries content that differs from the body")


class _RememberedSigners:
    """The signer certificate each (certificates, signer identifier) pair resolved to, least
    recently used forgotten first. Only a resolved signer is remembered, never a refusal."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._found: OrderedDict[tuple[bytes, bytes], x509.Certificate] = OrderedDict()

    def get(self, key: tuple[bytes, bytes]) -> x509.Certificate | None:
        with self._lock:
            found = self._found.get(key)
            if found is not None:
                self._found.move_to_end(key)
            return found

    def remember(self, key: tuple[bytes, bytes], certificate: x509.Certificate) -> None:
        with self._lock:
            self._found[key] = certificate
            self._found.move_to_end(key)
            while len(self._found) > self._size:
                self._found.popitem(last=False)


_SIGNERS = _RememberedSigners(REMEMBERED_CERTIFICATES)


def _signer_certificate(signed_data: cms.SignedData, signer_info: cms.SignerInfo) -> x509.Certificate:
    # The encodings as received (asn1crypto keeps them): no certificate is parsed to make the key.
    key = (signed_data["certificates"].dump(), signer_info["sid"].dump())
    remembered = _SIGNERS.get(key)
    if remembered is not None:
        return remembered
    certificate = _resolve_signer(signed_data, signer_info)
    _SIGNERS.remember(key, certificate)
    return certificate


def _resolve_signer(signed_data: cms.SignedData, signer_info: cms.SignerInfo) -> x509.Certificate:
    sid = signer_info["sid"]
    found: dict[bytes, x509.Certificate] = {}
    certificates = signed_data["certificates"]
    for choice in [] if isinstance(certificates, asn1.Void) else certificates:
        if choice.name != "certificate":
            continue  # attribute and other certificate formats cannot identify a signer
        candidate = choice.chosen
        der = candidate.dump()
        try:
            loaded = load_der_certificate(der)
        except ValueError as exc:
            # A certificate cryptography cannot read refuses the request only when it is the
            # signer's (asn1crypto tells); another one in the bag (a chain) is passed over.
            if _identifies_asn1(sid, candidate):
                raise SignatureError("Mdm-Signature's signer certificate is not well-formed") from exc
            continue
        if _identifies(sid, candidate, loaded):
            found[der] = loaded
    if not found:
        raise SignatureError("Mdm-Signature does not include the signer's certificate")
    if len(found) > 1:
        raise SignatureError("Mdm-Signature includes several certificates matching the signer")
    return next(iter(found.values()))


def _identifies(sid: cms.SignerIdentifier, candidate: Any, loaded: x509.Certificate) -> bool:
    """Whether the certificate is the one `sid` names. Read through cryptography, not
    asn1crypto: parsing each certificate in Python was a third of a device request's signature
    check (issue 18)."""
    if sid.name == "issuer_and_serial_number":
        wanted = sid.chosen
        if loaded.serial_number != wanted["serial_number"].native:
            return False
        # Identical encodings are the same name; only different ones need asn1crypto's
        # comparison (RFC 5280 string preparation).
        return loaded.issuer.public_bytes() == wanted["issuer"].dump() or candidate.issuer == wanted["issuer"]
    try:
        key_identifier = loaded.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return False
    return hmac.compare_digest(key_identifier, sid.chosen.native)


def _identifies_asn1(sid: cms.SignerIdentifier, candidate: Any) -> bool:
    if sid.name == "issuer_and_serial_number":
        wanted = sid.chosen
        return bool(
            candidate.serial_number == wanted["serial_number"].native
            and _same_name(candidate.issuer, wanted["issuer"])
        )
    key_identifier = candidate.key_identifier
    return key_identifier is not None and hmac.compare_digest(key_identifier, sid.chosen.native)


def _same_name(a: Any, b: Any) -> bool:
    # Identical encodings are the same name; only different ones need asn1crypto's comparison
    # (RFC 5280 string preparation, a few milliseconds a request when done every time).
    return bool(a.dump() == b.dump() or a == b)


def _signed_attributes_der(signed_attrs: cms.CMSAttributes, body: bytes, digest_name: str) -> bytes:
    """The bytes the signature covers (RFC 5652 §5.4), after checking the mandatory attributes."""
    digest = hashes.Hash(_digest_algorithm(digest_name))
    digest.update(body)
    return _checked_signed_attributes(signed_attrs, digest.finalize())


def _checked_signed_attributes(signed_attrs: cms.CMSAttributes, body_digest: bytes) -> bytes:
    content_types: list[str] = []
    message_digests: list[bytes] = []
    for attribute in signed_attrs:
        name = attribute["type"].native
        values = attribute["values"]
        if name == "content_type":
            content_types.extend(value.native for value in values)
        elif name == "message_digest":
            message_digests.extend(value.native for value in values)
    if content_types != ["data"]:
        raise SignatureError("Mdm-Signature signed attributes must name the content type data once")
    if len(message_digests) != 1:
        raise SignatureError("Mdm-Signature signed attributes must carry exactly one message digest")
    if not hmac.compare_digest(body_digest, message_digests[0]):
        raise SignatureError("Mdm-Signature does not match the body")
    # The signature covers the attributes as an explicit SET OF, not the [0] IMPLICIT tag they are
    # stored under; untag() keeps the received content octets, so re-encoding cannot alter them.
    return signed_attrs.untag().dump()


def _digest_algorithm(name: str) -> hashes.HashAlgorithm:
    algorithm = _DIGESTS.get(name)
    if algorithm is None:
        raise SignatureError("Mdm-Signature uses an unsupported digest algorithm")
    return algorithm()


def _verify_signature(
    certificate: x509.Certificate,
    signature_oid: str,
    digest_name: str,
    signature: bytes,
    signed: bytes,
    *,
    prehashed: bool = False,
) -> None:
    """`prehashed`: `signed` is already the digest of the signed bytes."""
    digest_algorithm = _digest_algorithm(digest_name)
    chosen: hashes.HashAlgorithm | Prehashed = Prehashed(digest_algorithm) if prehashed else digest_algorithm
    key_type, named_hash = _SIGNATURE_ALGORITHMS.get(signature_oid, (None, None))
    if key_type is None:
        raise SignatureError("Mdm-Signature uses an unsupported signature algorithm")
    if named_hash is not None and named_hash != digest_name:
        raise SignatureError("Mdm-Signature names inconsistent digest algorithms")
    mismatch = "Mdm-Signature does not match the body"
    verify_with_certificate(certificate, signature, signed, chosen, key_type=key_type, mismatch=mismatch)


def verify_with_certificate(
    certificate: x509.Certificate,
    signature: bytes,
    signed: bytes,
    algorithm: hashes.HashAlgorithm | Prehashed,
    *,
    key_type: str | None = None,
    mismatch: str = "signature does not match the signed bytes",
) -> None:
    """Raise SignatureError unless `signature` over `signed` verifies with the certificate's key,
    by the schemes device keys sign with: RSA PKCS#1 v1.5 or ECDSA. Both device channels use it
    (the Mdm-Signature here, the Android agent's request signature). `key_type` ("rsa", "ec"),
    where the signature names one, must be the key's; a signature that does not verify raises
    SignatureMismatch with the message `mismatch`."""
    try:
        public_key = _public_key(certificate)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SignatureError("signer certificate has an unusable public key") from exc
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    is_ec = isinstance(public_key, ec.EllipticCurvePublicKey)
    if not (is_rsa or is_ec):
        raise SignatureError("signer certificate's key type is not supported")
    if key_type is not None and key_type != ("rsa" if is_rsa else "ec"):
        raise SignatureError("signature algorithm does not match the signer's key")
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, signed, padding.PKCS1v15(), algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, signed, ec.ECDSA(algorithm))
    except InvalidSignature as exc:
        raise SignatureMismatch(mismatch) from exc


@lru_cache(maxsize=REMEMBERED_CERTIFICATES)
def _public_key(certificate: x509.Certificate) -> Any:
    return certificate.public_key()


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca


def _valid_at(cert: x509.Certificate, at: datetime) -> bool:
    return cert.not_valid_before_utc <= at <= cert.not_valid_after_utc
