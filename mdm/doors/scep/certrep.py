"""Building the CA's CertRep reply (RFC 8894 §3.3.2).

SUCCESS: SignedData by the CA whose content is an EnvelopedData, encrypted to the requester's
signing certificate, holding a degenerate certs-only PKCS#7 with the issued certificate.
FAILURE: the same signed attributes with pkiStatus 2 and a failInfo, and no content; it still
carries contentType and messageDigest (of the empty content), which clients require.
"""

from __future__ import annotations

import os
from datetime import datetime

from asn1crypto import algos, cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from enrollment import envelope
from mdm.doors.scep import attributes as attr
from mdm.doors.scep.attributes import MessageType, PKIStatus
from mdm.ground.ca import Credential

CONTENT_TYPE = "application/x-pki-message"


def degenerate_certificates(certs: list[x509.Certificate]) -> bytes:
    """A certs-only SignedData (no signers), DER."""
    return pkcs7.serialize_certificates(certs, Encoding.DER)


def _attribute(name: str, value: object) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": name, "values": [value]})


def _signed(
    ca: Credential,
    content: bytes | None,
    scep_attributes: list[cms.CMSAttribute],
    signing_time: datetime,
) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(content or b"")
    signed_attrs = cms.CMSAttributes(
        [
            _attribute("content_type", "data"),
            _attribute("signing_time", cms.Time(name="utc_time", value=signing_time)),
            _attribute("message_digest", digest.finalize()),
            *scep_attributes,
        ]
    )
    # The signature covers the attributes DER-encoded as a SET (asn1crypto sorts SET OF).
    signature = ca.private_key.sign(signed_attrs.dump(), padding.PKCS1v15(), hashes.SHA256())
    ca_asn1 = asn1_x509.Certificate.load(ca.certificate.public_bytes(Encoding.DER))
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value=cms.IssuerAndSerialNumber(
                    {"issuer": ca_asn1.issuer, "serial_number": ca_asn1.serial_number}
                ),
            ),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"}),
            "signature": signature,
        }
    )
    encap: dict[str, object] = {"content_type": "data"}
    if content is not None:
        encap["content"] = content
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": cms.ContentInfo(encap),
            "certificates": [cms.CertificateChoices(name="certificate", value=ca_asn1)],
            "signer_infos": [signer_info],
        }
    )
    return cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()


def _common(transaction_id: str, recipient_nonce: bytes, status: str) -> list[cms.CMSAttribute]:
    return [
        _attribute(attr.MESSAGE_TYPE, MessageType.CERT_REP),
        _attribute(attr.PKI_STATUS, status),
        _attribute(attr.TRANSACTION_ID, transaction_id),
        _attribute(attr.RECIPIENT_NONCE, recipient_nonce),
        _attribute(attr.SENDER_NONCE, os.urandom(16)),
    ]


def success(
    ca: Credential,
    *,
    transaction_id: str,
    recipient_nonce: bytes,
    issued: x509.Certificate,
    requester: x509.Certificate,
    cipher: str,
    now: datetime,
) -> bytes:
    sealed = envelope.encrypt(degenerate_certificates([issued]), requester, envelope.reply_cipher(cipher))
    return _signed(ca, sealed.dump(), _common(transaction_id, recipient_nonce, PKIStatus.SUCCESS), now)


def failure(
    ca: Credential, *, transaction_id: str, recipient_nonce: bytes, fail_info: str, now: datetime
) -> bytes:
    attributes = [
        *_common(transaction_id, recipient_nonce, PKIStatus.FAILURE),
        _attribute(attr.FAIL_INFO, fail_info),
    ]
    return _signed(ca, None, attributes, now)
