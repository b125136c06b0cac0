"""Reading a SCEP PKIMessage: a CMS SignedData whose content is an EnvelopedData holding a CSR.

Every check that decides whether the request is authentic (message digest, signature) is made
with `cryptography` over the exact bytes received; asn1crypto only takes the structure apart.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from asn1crypto import cms
from asn1crypto import core as asn1
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import AttributeOID

from enrollment import envelope
from mdm.doors.scep import attributes as attr
from mdm.doors.scep.attributes import FailInfo
from mdm.ground.x509util import load_der_certificate, load_der_csr

MAX_MESSAGE_BYTES = 256 * 1024
DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,  # still what several clients sign with
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_RSA_SIGNATURES = {"rsassa_pkcs1v15", "sha1_rsa", "sha256_rsa", "sha384_rsa", "sha512_rsa"}


class MalformedMessage(ValueError):
    """Not a SCEP PKIMessage at all: answered with HTTP 400 (no CertRep can be built)."""


class RequestRejected(Exception):
    """A readable request that must be refused with a FAILURE CertRep carrying `fail_info`."""

    def __init__(self, fail_info: str, reason: str) -> None:
        super().__init__(reason)
        self.fail_info = fail_info
        self.reason = reason


@dataclass
class PKIMessage:
    """An authenticated SCEP request (signature checked; envelope not yet opened)."""

    message_type: str
    transaction_id: str
    sender_nonce: bytes
    signer: x509.Certificate
    digest_algorithm: str
    enveloped: cms.EnvelopedData | None
    signature_error: str | None = None  # set when the signature did not verify
    # What the FAILURE CertRep says about signature_error: badAlg for an algorithm we refuse
    # (MD5, SHA-224, a non-RSA key), badMessageCheck for a check that failed.
    signature_fail_info: str = FailInfo.BAD_MESSAGE_CHECK

    def open_csr(
        self, ca_cert: x509.Certificate, ca_key: rsa.RSAPrivateKey
    ) -> tuple[x509.CertificateSigningRequest, str]:
        """(CSR, content-encryption algorithm) from the envelope, or RequestRejected."""
        if self.enveloped is None:
            raise RequestRejected(FailInfo.BAD_REQUEST, "the request carries no envelope")
        try:
            plaintext, cipher = envelope.decrypt(self.enveloped, ca_cert, ca_key)
        except envelope.UnsupportedCipher as exc:
            raise RequestRejected(FailInfo.BAD_ALG, str(exc)) from exc
        except envelope.EnvelopeError as exc:
            raise RequestRejected(FailInfo.BAD_MESSAGE_CHECK, str(exc)) from exc
        try:
            return load_der_csr(plaintext), cipher
        except ValueError as exc:
            raise RequestRejected(
                FailInfo.BAD_REQUEST, "the envelope does not hold a PKCS#10 request"
            ) from exc


def challenge_password(csr: x509.CertificateSigningRequest) -> str | None:
    try:
        value = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
    except x509.AttributeNotFound:
        return None
    except ValueError:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _set_der(contents: bytes) -> bytes:
    """A DER SET with these contents: what a signature over signed attributes covers (RFC 5652 §5.4)."""
    length = len(contents)
    if length < 0x80:
        header = bytes([0x31, length])
    else:
        size = length.to_bytes((length.bit_length() + 7) // 8, "big")
        header = bytes([0x31, 0x80 | len(size)]) + size
    return header + contents


def _single_attribute(attributes: cms.CMSAttributes, name: str) -> object | None:
    found = [a for a in attributes if a["type"].native == name]
    if not found:
        return None
    values = found[0]["values"]
    if len(found) != 1 or len(values) != 1:
        raise MalformedMessage(f"attribute {name} must appear once with one value")
    return values[0].native


def parse_pki_message(der: bytes) -> PKIMessage:
    """Parse and authenticate a request. A message whose signature fails is still returned,
    with `signature_error` set, so the handler can answer it with a FAILURE CertRep."""
    if not der or len(der) > MAX_MESSAGE_BYTES:
        raise MalformedMessage("empty or oversized PKIMessage")
    try:
        return _parse(der)
    except (MalformedMessage, RequestRejected):
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        # asn1crypto parses lazily: a malformed structure surfaces at first access, anywhere.
        raise MalformedMessage("not a well-formed SCEP PKIMessage") from exc


def _parse(der: bytes) -> PKIMessage:
    content_info = cms.ContentInfo.load(der, strict=True)
    if content_info["content_type"].native != "signed_data":
        raise MalformedMessage("PKIMessage is not a CMS SignedData")
    signed_data = content_info["content"]
    signer_infos = signed_data["signer_infos"]
    if len(signer_infos) != 1:
        raise MalformedMessage("PKIMessage must have exactly one signer")
    signer_info = signer_infos[0]
    signed_attrs = signer_info["signed_attrs"]
    if isinstance(signed_attrs, asn1.Void) or not len(signed_attrs):
        raise MalformedMessage("PKIMessage has no signed attributes")

    message_type = _single_attribute(signed_attrs, attr.MESSAGE_TYPE)
    transaction_id = _single_attribute(signed_attrs, attr.TRANSACTION_ID)
    sender_nonce = _single_attribute(signed_attrs, attr.SENDER_NONCE)
    if not isinstance(message_type, str) or not isinstance(transaction_id, str) or not transaction_id:
        raise MalformedMessage("PKIMessage lacks messageType or transactionID")
    if not isinstance(sender_nonce, bytes) or not sender_nonce:
        raise MalformedMessage("PKIMessage lacks senderNonce")

    signer = _signer_certificate(signed_data, signer_info)
    encap = signed_data["encap_content_info"]
    content = encap["content"]
    content_bytes = b"" if isinstance(content, asn1.Void) or content.native is None else content.native
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    message = PKIMessage(message_type, transaction_id, sender_nonce, signer, digest_name, None)
    try:
        _verify(signer, signer_info, signed_attrs, content_bytes, digest_name)
    except RequestRejected as exc:
        message.signature_error = exc.reason
        message.signature_fail_info = exc.fail_info
        return message
    if content_bytes:
        inner = cms.ContentInfo.load(content_bytes)
        if inner["content_type"].native != "enveloped_data":
            raise RequestRejected(FailInfo.BAD_REQUEST, "the signed content is not an EnvelopedData")
        message.enveloped = inner["content"]
    return message


def _signer_certificate(signed_data: cms.SignedData, signer_info: cms.SignerInfo) -> x509.Certificate:
    sid = signer_info["sid"]
    certificates = signed_data["certificates"]
    for choice in [] if isinstance(certificates, asn1.Void) else certificates:
        if choice.name != "certificate":
            continue
        candidate = choice.chosen
        if sid.name == "issuer_and_serial_number":
            wanted = sid.chosen
            if (
                candidate.issuer == wanted["issuer"]
                and candidate.serial_number == wanted["serial_number"].native
            ):
                return load_der_certificate(candidate.dump())
        elif candidate.key_identifier is not None and candidate.key_identifier == sid.chosen.native:
            return load_der_certificate(candidate.dump())
    raise MalformedMessage("PKIMessage does not include the signer's certificate")


def _verify(
    signer: x509.Certificate,
    signer_info: cms.SignerInfo,
    signed_attrs: cms.CMSAttributes,
    content: bytes,
    digest_name: str,
) -> None:
    algorithm = DIGESTS.get(digest_name)
    if algorithm is None:
        raise RequestRejected(FailInfo.BAD_ALG, f"unsupported digest algorithm {digest_name}")
    if signer_info["signature_algorithm"]["algorithm"].native not in _RSA_SIGNATURES:
        raise RequestRejected(FailInfo.BAD_ALG, "only RSA signatures are supported")
    content_types = [a["values"][0].native for a in signed_attrs if a["type"].native == "content_type"]
    digests = [a["values"][0].native for a in signed_attrs if a["type"].native == "message_digest"]
    if content_types != ["data"] or len(digests) != 1:
        raise RequestRejected(
            FailInfo.BAD_MESSAGE_CHECK, "signed attributes lack contentType or messageDigest"
        )
    digest = hashes.Hash(algorithm())
    digest.update(content)
    if not hmac.compare_digest(digest.finalize(), digests[0]):
        raise RequestRejected(FailInfo.BAD_MESSAGE_CHECK, "messageDigest does not match the content")
    public_key = signer.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise RequestRejected(FailInfo.BAD_ALG, "the signer key is not RSA")
    try:
        public_key.verify(
            signer_info["signature"].native, _set_der(signed_attrs.contents), padding.PKCS1v15(), algorithm()
        )
    except (InvalidSignature, UnsupportedAlgorithm, ValueError) as exc:
        raise RequestRejected(FailInfo.BAD_MESSAGE_CHECK, "the request signature does not verify") from exc
