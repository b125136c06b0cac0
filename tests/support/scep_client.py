"""A SCEP client (RFC 8894) for tests, written independently of the server's code.

It does what an iPad's SCEP client does: generate a key, make a CSR with the challenge password,
sign a PKCSReq with a self-signed certificate (or a RenewalReq with the current identity), encrypt
the CSR to the CA with AES or DES-EDE3, and check the CertRep it gets back: CA signature,
messageDigest, transactionID, recipientNonce; then decrypt the issued certificate.

    scep = ScepClient(client)                     # Flask test client or httpx.Client
    result = scep.enroll(challenge="...", cipher="tripledes_3key")
    assert result.status == "0"; result.certificate

asn1crypto for structure, `cryptography` for every cryptographic operation.
"""

from __future__ import annotations

import base64
import os
import warnings
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from asn1crypto import algos, cms
from asn1crypto import core as asn1
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import AttributeOID, NameOID

from mdm.ground import clock

OID_MESSAGE_TYPE = "2.16.840.1.113733.1.9.2"
OID_PKI_STATUS = "2.16.840.1.113733.1.9.3"
OID_FAIL_INFO = "2.16.840.1.113733.1.9.4"
OID_SENDER_NONCE = "2.16.840.1.113733.1.9.5"
OID_RECIPIENT_NONCE = "2.16.840.1.113733.1.9.6"
OID_TRANSACTION_ID = "2.16.840.1.113733.1.9.7"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"

PKCS_REQ = "19"
RENEWAL_REQ = "17"
CERT_POLL = "20"

CIPHER_OIDS = {
    "aes128_cbc": ("2.16.840.1.101.3.4.1.2", 16, 16),
    "aes256_cbc": ("2.16.840.1.101.3.4.1.42", 32, 16),
    "tripledes_3key": ("1.2.840.113549.3.7", 24, 8),
    # Blowfish-CBC (Bruce Schneier's OID): what an old client may still offer; servers refuse it.
    "blowfish_cbc": ("1.3.6.1.4.1.3029.1.2", 16, 8),
}
_CIPHERS_BY_OID = {oid: (name, size, block) for name, (oid, size, block) in CIPHER_OIDS.items()}
# MD5 and SHA-224 only to send what old clients send (the server must refuse them: badAlg).
_HASHES = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "md5": hashes.MD5, "sha224": hashes.SHA224}


class _AnySet(asn1.SetOf):
    _child_spec = asn1.Any


class _RawAttribute(asn1.Sequence):
    _fields = [("type", asn1.ObjectIdentifier), ("values", _AnySet)]


def _attribute(oid: str, value: asn1.Asn1Value) -> cms.CMSAttribute:
    raw = _RawAttribute({"type": oid, "values": [asn1.Any.load(value.dump())]})
    return cms.CMSAttribute.load(raw.dump())


def _attribute_values(attributes: cms.CMSAttributes) -> dict[str, list[bytes]]:
    """dotted OID → the DER of each value, whatever asn1crypto knows about the OID."""
    out: dict[str, list[bytes]] = {}
    for attribute in attributes:
        raw = _RawAttribute.load(attribute.dump())
        out.setdefault(raw["type"].dotted, []).extend(v.dump() for v in raw["values"])
    return out


def _set_der(contents: bytes) -> bytes:
    """The received signed attributes re-tagged as a SET: what the signature covers."""
    n = len(contents)
    if n < 0x80:
        return bytes([0x31, n]) + contents
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x31, 0x80 | len(size)]) + size + contents


def _cipher(name: str, key: bytes) -> Any:
    if name.startswith("aes"):
        return algorithms.AES(key)
    if name == "blowfish_cbc":
        from cryptography.hazmat.decrepit.ciphers.algorithms import Blowfish

        return Blowfish(key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TripleDES(key)


def envelope_for(content: bytes, recipient: x509.Certificate, cipher: str) -> bytes:
    """DER ContentInfo(EnvelopedData) of `content` for `recipient` (RSA PKCS#1 v1.5 key transport)."""
    oid, key_size, block = CIPHER_OIDS[cipher]
    content_key = os.urandom(key_size)
    iv = os.urandom(block)
    padder = sym_padding.PKCS7(block * 8).padder()
    encryptor = Cipher(_cipher(cipher, content_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(content) + padder.finalize()) + encryptor.finalize()
    public_key = recipient.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    parsed = asn1_x509.Certificate.load(recipient.public_bytes(Encoding.DER))
    enveloped = cms.EnvelopedData(
        {
            "version": "v0",
            "recipient_infos": [
                cms.RecipientInfo(
                    name="ktri",
                    value={
                        "version": "v0",
                        "rid": cms.RecipientIdentifier(
                            name="issuer_and_serial_number",
                            value={"issuer": parsed.issuer, "serial_number": parsed.serial_number},
                        ),
                        "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15"},
                        "encrypted_key": public_key.encrypt(content_key, padding.PKCS1v15()),
                    },
                )
            ],
            "encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": algos.EncryptionAlgorithm(
                    {"algorithm": oid, "parameters": asn1.OctetString(iv)}
                ),
                "encrypted_content": ciphertext,
            },
        }
    )
    return cms.ContentInfo({"content_type": "enveloped_data", "content": enveloped}).dump()


def open_envelope(der: bytes, key: rsa.RSAPrivateKey) -> tuple[bytes, str]:
    """(plaintext, cipher name) of a DER ContentInfo(EnvelopedData) for `key`."""
    info = cms.ContentInfo.load(der)
    assert info["content_type"].native == "enveloped_data", info["content_type"].native
    enveloped = info["content"]
    recipient = enveloped["recipient_infos"][0].chosen
    assert recipient["key_encryption_algorithm"]["algorithm"].native == "rsaes_pkcs1v15"
    content_key = key.decrypt(recipient["encrypted_key"].native, padding.PKCS1v15())
    eci = enveloped["encrypted_content_info"]
    algorithm = eci["content_encryption_algorithm"]
    name, key_size, block = _CIPHERS_BY_OID[algorithm["algorithm"].dotted]
    assert len(content_key) == key_size
    decryptor = Cipher(_cipher(name, content_key), modes.CBC(algorithm["parameters"].native)).decryptor()
    padded = decryptor.update(eci["encrypted_content"].native) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(block * 8).unpadder()
    return unpadder.update(padded) + unpadder.finalize(), name


def self_signed(key: rsa.RSAPrivateKey, common_name: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = clock.now()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def make_csr(
    key: rsa.RSAPrivateKey, common_name: str, challenge: str | None
) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if challenge is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
    return builder.sign(key, hashes.SHA256())


def pki_message(
    *,
    message_type: str,
    content: bytes,
    signer_cert: x509.Certificate,
    signer_key: rsa.RSAPrivateKey,
    transaction_id: str,
    sender_nonce: bytes,
    digest: str = "sha256",
) -> bytes:
    """DER SignedData carrying `content` with the SCEP signed attributes."""
    hash_cls = _HASHES[digest]
    h = hashes.Hash(hash_cls())
    h.update(content)
    signed_attrs = cms.CMSAttributes(
        [
            _attribute(OID_CONTENT_TYPE, asn1.ObjectIdentifier("1.2.840.113549.1.7.1")),
            _attribute(OID_MESSAGE_DIGEST, asn1.OctetString(h.finalize())),
            _attribute(OID_MESSAGE_TYPE, asn1.PrintableString(message_type)),
            _attribute(OID_TRANSACTION_ID, asn1.PrintableString(transaction_id)),
            _attribute(OID_SENDER_NONCE, asn1.OctetString(sender_nonce)),
        ]
    )
    signature = signer_key.sign(signed_attrs.dump(), padding.PKCS1v15(), hash_cls())
    parsed = asn1_x509.Certificate.load(signer_cert.public_bytes(Encoding.DER))
    signed = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": digest}],
            "encap_content_info": {"content_type": "data", "content": content},
            "certificates": [cms.CertificateChoices(name="certificate", value=parsed)],
            "signer_infos": [
                {
                    "version": "v1",
                    "sid": cms.SignerIdentifier(
                        name="issuer_and_serial_number",
                        value={"issuer": parsed.issuer, "serial_number": parsed.serial_number},
                    ),
                    "digest_algorithm": {"algorithm": digest},
                    "signed_attrs": signed_attrs,
                    "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
                    "signature": signature,
                }
            ],
        }
    )
    return cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()


@dataclass
class CertRep:
    status: str  # "0" SUCCESS, "2" FAILURE, "3" PENDING
    fail_info: str | None
    transaction_id: str
    recipient_nonce: bytes
    sender_nonce: bytes
    message_type: str
    attribute_oids: set[str]
    envelope: bytes | None
    raw: bytes
    certificate: x509.Certificate | None = None
    reply_cipher: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_certrep(der: bytes, ca_cert: x509.Certificate) -> CertRep:
    """Parse a CertRep and check it is signed by the CA over exactly its content."""
    info = cms.ContentInfo.load(der)
    assert info["content_type"].native == "signed_data"
    signed = info["content"]
    signer = signed["signer_infos"][0]
    attrs = _attribute_values(signer["signed_attrs"])
    content = signed["encap_content_info"]["content"]
    content_bytes = b"" if isinstance(content, asn1.Void) or content.native is None else content.native
    digest_name = signer["digest_algorithm"]["algorithm"].native
    h = hashes.Hash(_HASHES[digest_name]())
    h.update(content_bytes)
    assert OID_MESSAGE_DIGEST in attrs, "CertRep lacks messageDigest"
    assert asn1.OctetString.load(attrs[OID_MESSAGE_DIGEST][0]).native == h.finalize(), (
        "messageDigest mismatch"
    )
    set_der = _set_der(signer["signed_attrs"].contents)
    public_key = ca_cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(signer["signature"].native, set_der, padding.PKCS1v15(), _HASHES[digest_name]())

    def text(oid: str) -> str | None:
        values = attrs.get(oid)
        return asn1.PrintableString.load(values[0]).native if values else None

    def octets(oid: str) -> bytes:
        values = attrs.get(oid)
        return asn1.OctetString.load(values[0]).native if values else b""

    return CertRep(
        status=text(OID_PKI_STATUS) or "",
        fail_info=text(OID_FAIL_INFO),
        transaction_id=text(OID_TRANSACTION_ID) or "",
        recipient_nonce=octets(OID_RECIPIENT_NONCE),
        sender_nonce=octets(OID_SENDER_NONCE),
        message_type=text(OID_MESSAGE_TYPE) or "",
        attribute_oids=set(attrs),
        envelope=content_bytes or None,
        raw=der,
    )


@dataclass
class Enrollment:
    key: rsa.RSAPrivateKey
    csr: x509.CertificateSigningRequest
    transaction_id: str
    sender_nonce: bytes
    reply: CertRep
    http_status: int


class ScepClient:
    def __init__(self, http: Any, path: str = "/scep") -> None:
        self.http = http
        self.path = path

    def _get(self, query: str) -> Any:
        return self.http.get(f"{self.path}?{query}")

    def get_ca_caps(self) -> list[str]:
        response = self._get("operation=GetCACaps")
        assert response.status_code == 200
        body = response.data if hasattr(response, "data") else response.content
        return [line for line in body.decode().splitlines() if line]

    def get_ca_cert(self) -> x509.Certificate:
        response = self._get("operation=GetCACert")
        assert response.status_code == 200
        body = response.data if hasattr(response, "data") else response.content
        return x509.load_der_x509_certificate(body)

    def send(self, message: bytes, *, method: str = "POST") -> Any:
        if method == "POST":
            if hasattr(self.http, "application"):  # Flask test client
                return self.http.post(
                    f"{self.path}?operation=PKIOperation",
                    data=message,
                    headers={"Content-Type": "application/x-pki-message"},
                )
            return self.http.post(
                f"{self.path}?operation=PKIOperation",
                content=message,
                headers={"Content-Type": "application/x-pki-message"},
            )
        encoded = quote(base64.b64encode(message).decode(), safe="")
        return self._get(f"operation=PKIOperation&message={encoded}")

    def enroll(
        self,
        challenge: str | None,
        *,
        cipher: str = "aes128_cbc",
        digest: str = "sha256",
        method: str = "POST",
        key: rsa.RSAPrivateKey | None = None,
        common_name: str = "Hikeshi device test",
        message_type: str = PKCS_REQ,
        signer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
        ca_cert: x509.Certificate | None = None,
        tamper: bool = False,
    ) -> Enrollment:
        """One PKIOperation. PKCSReq is signed with a self-signed certificate of the new key;
        give `signer` (current identity) for a RenewalReq."""
        ca_cert = ca_cert or self.get_ca_cert()
        key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        csr = make_csr(key, common_name, challenge)
        signer_cert, signer_key = signer or (self_signed(key, "SCEP SIGNER"), key)
        transaction_id = base64.b64encode(os.urandom(20)).decode()
        sender_nonce = os.urandom(16)
        message = pki_message(
            message_type=message_type,
            content=envelope_for(csr.public_bytes(Encoding.DER), ca_cert, cipher),
            signer_cert=signer_cert,
            signer_key=signer_key,
            transaction_id=transaction_id,
            sender_nonce=sender_nonce,
            digest=digest,
        )
        if tamper:
            # Flip one byte inside the signature: the signed content stays readable.
            message = message[:-5] + bytes([message[-5] ^ 0xFF]) + message[-4:]
        response = self.send(message, method=method)
        body = response.data if hasattr(response, "data") else response.content
        if response.status_code != 200:
            raise AssertionError(f"PKIOperation answered HTTP {response.status_code}: {body[:200]!r}")
        reply = parse_certrep(body, ca_cert)
        if reply.status == "0" and reply.envelope:
            degenerate, reply.reply_cipher = open_envelope(reply.envelope, signer_key)
            certs = pkcs7.load_der_pkcs7_certificates(degenerate)
            assert len(certs) == 1
            reply.certificate = certs[0]
        return Enrollment(key, csr, transaction_id, sender_nonce, reply, response.status_code)
