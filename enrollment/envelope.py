"""CMS EnvelopedData with RSA key transport: SCEP request and reply envelopes, encrypted profiles.

asn1crypto reads and writes the structure; `cryptography` does every cryptographic operation.
`cryptography`'s own PKCS#7 decryption only handles AES, but SCEP clients still send DES-EDE3 and
even single DES (micromdm's scepclient encrypts with DES-CBC whatever the server advertises), so
those come from `cryptography.hazmat.decrepit`. We never *choose* single DES: replies to such a
client are encrypted with DES-EDE3, which every client able to do DES also decrypts.
"""

from __future__ import annotations

import os
import warnings

from asn1crypto import algos, cms, parser
from asn1crypto import core as asn1
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, CipherAlgorithm, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding

# Content-encryption algorithms, by asn1crypto's name: (key bytes, block bytes).
CIPHERS: dict[str, tuple[int, int]] = {
    "aes128_cbc": (16, 16),
    "aes192_cbc": (24, 16),
    "aes256_cbc": (32, 16),
    "tripledes_3key": (24, 8),  # DES-EDE3-CBC
    "des": (8, 8),  # DES-CBC: decrypt only
}
ENCRYPTABLE = ("aes128_cbc", "aes192_cbc", "aes256_cbc", "tripledes_3key")


class EnvelopeError(ValueError):
    """The envelope cannot be opened: not for us, unsupported algorithm, or corrupt."""


class UnsupportedCipher(EnvelopeError):
    """The envelope is encrypted with an algorithm we do not accept (Blowfish, RC2, ...): SCEP
    answers failInfo badAlg for it (RFC 8894 section 3.2.1.4), not badMessageCheck."""


def _join_octet_chunks(data: bytes, depth: int = 0) -> bytes:
    if depth > 8:
        raise EnvelopeError("encrypted content nests too deeply")
    out = bytearray()
    while data:
        length = parser.peek(data)
        class_, method, tag, _header, contents, _trailer = parser.parse(data[:length])
        if class_ != 0 or tag != 4:
            raise EnvelopeError("encrypted content chunk is not an OCTET STRING")
        out += contents if method == 0 else _join_octet_chunks(contents, depth + 1)
        data = data[length:]
    return bytes(out)


def _ciphertext(content_info: cms.EncryptedContentInfo) -> bytes:
    """The encryptedContent octets, read from the raw encoding.

    Go's pkcs7 (micromdm's scepclient) sends encryptedContent as a constructed, definite-length
    [0] of OCTET STRING chunks: valid BER that asn1crypto only accepts in indefinite form.
    """
    data = content_info.contents
    while data:
        length = parser.peek(data)
        class_, method, tag, _header, contents, _trailer = parser.parse(data[:length])
        data = data[length:]
        if class_ == 2 and tag == 0:  # [0] IMPLICIT encryptedContent
            return contents if method == 0 else _join_octet_chunks(contents)
    raise EnvelopeError("the envelope has no encrypted content")


def _cipher(name: str, key: bytes) -> CipherAlgorithm:
    if name.startswith("aes"):
        return algorithms.AES(key)
    if name == "des":
        key = key * 3  # DES-EDE3 with K1 = K2 = K3 is single DES
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TripleDES(key)


def cipher_name(algorithm: algos.EncryptionAlgorithm) -> str:
    name = algorithm["algorithm"].native
    if name not in CIPHERS:
        raise UnsupportedCipher(f"unsupported content encryption algorithm {algorithm['algorithm'].dotted}")
    return str(name)


def reply_cipher(request_cipher: str) -> str:
    """The algorithm to answer a client with: the one it used, but never single DES."""
    return "tripledes_3key" if request_cipher == "des" else request_cipher


def _matches(recipient: cms.KeyTransRecipientInfo, cert: x509.Certificate) -> bool:
    rid = recipient["rid"]
    if rid.name == "issuer_and_serial_number":
        wanted = rid.chosen
        ours = asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))
        return wanted["issuer"] == ours.issuer and wanted["serial_number"].native == cert.serial_number
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return False
    return bool(rid.chosen.native == ski)


def decrypt(
    enveloped: cms.EnvelopedData, cert: x509.Certificate, key: rsa.RSAPrivateKey
) -> tuple[bytes, str]:
    """(plaintext, content-encryption algorithm name) of an envelope addressed to `cert`."""
    try:
        return _decrypt(enveloped, cert, key)
    except EnvelopeError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        # asn1crypto parses lazily: a malformed structure surfaces at first access.
        raise EnvelopeError("the envelope is not a well-formed EnvelopedData") from exc


def _decrypt(
    enveloped: cms.EnvelopedData, cert: x509.Certificate, key: rsa.RSAPrivateKey
) -> tuple[bytes, str]:
    recipient = None
    for info in enveloped["recipient_infos"]:
        if info.name == "ktri" and _matches(info.chosen, cert):
            recipient = info.chosen
            break
    if recipient is None:
        raise EnvelopeError("the envelope is not addressed to this certificate")
    key_algorithm = recipient["key_encryption_algorithm"]["algorithm"].native
    encrypted_key = recipient["encrypted_key"].native
    try:
        if key_algorithm == "rsaes_pkcs1v15":
            content_key = key.decrypt(encrypted_key, asym_padding.PKCS1v15())
        elif key_algorithm == "rsaes_oaep":
            params = recipient["key_encryption_algorithm"]["parameters"]
            hash_name = params["hash_algorithm"]["algorithm"].native if params.native else "sha1"
            oaep_digests: dict[str, type[hashes.HashAlgorithm]] = {
                "sha1": hashes.SHA1,
                "sha256": hashes.SHA256,
                "sha512": hashes.SHA512,
            }
            digest = oaep_digests.get(hash_name)
            if digest is None:
                raise EnvelopeError(f"unsupported OAEP hash {hash_name}")
            content_key = key.decrypt(
                encrypted_key, asym_padding.OAEP(asym_padding.MGF1(digest()), digest(), None)
            )
        else:
            raise EnvelopeError(f"unsupported key encryption algorithm {key_algorithm}")
    except ValueError as exc:
        raise EnvelopeError("the content key cannot be decrypted") from exc

    content_info = enveloped["encrypted_content_info"]
    algorithm = content_info["content_encryption_algorithm"]
    name = cipher_name(algorithm)
    key_size, block = CIPHERS[name]
    if len(content_key) != key_size:
        raise EnvelopeError("the content key has the wrong length for its algorithm")
    iv = algorithm["parameters"].native
    if not isinstance(iv, bytes) or len(iv) != block:
        raise EnvelopeError("the content encryption IV is missing or has the wrong length")
    ciphertext = _ciphertext(content_info)
    if not ciphertext or len(ciphertext) % block:
        raise EnvelopeError("the encrypted content is missing or not whole blocks")
    decryptor = Cipher(_cipher(name, content_key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(block * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize(), name
    except ValueError as exc:
        raise EnvelopeError("the encrypted content does not decrypt (wrong key or corrupt)") from exc


def encrypt(content: bytes, recipient: x509.Certificate, cipher: str = "aes256_cbc") -> cms.ContentInfo:
    """An EnvelopedData ContentInfo of `content` for the holder of `recipient`'s key."""
    if cipher not in ENCRYPTABLE:
        raise EnvelopeError(f"will not encrypt with {cipher}")
    public_key = recipient.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise EnvelopeError("the recipient certificate does not hold an RSA key")
    key_size, block = CIPHERS[cipher]
    content_key = os.urandom(key_size)
    iv = os.urandom(block)
    padder = padding.PKCS7(block * 8).padder()
    padded = padder.update(content) + padder.finalize()
    encryptor = Cipher(_cipher(cipher, content_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    ours = asn1_x509.Certificate.load(recipient.public_bytes(Encoding.DER))
    recipient_info = cms.RecipientInfo(
        name="ktri",
        value=cms.KeyTransRecipientInfo(
            {
                "version": "v0",
                "rid": cms.RecipientIdentifier(
                    name="issuer_and_serial_number",
                    value=cms.IssuerAndSerialNumber(
                        {"issuer": ours.issuer, "serial_number": ours.serial_number}
                    ),
                ),
                "key_encryption_algorithm": cms.KeyEncryptionAlgorithm({"algorithm": "rsaes_pkcs1v15"}),
                "encrypted_key": public_key.encrypt(content_key, asym_padding.PKCS1v15()),
            }
        ),
    )
    enveloped = cms.EnvelopedData(
        {
            "version": "v0",
            "recipient_infos": [recipient_info],
            "encrypted_content_info": cms.EncryptedContentInfo(
                {
                    "content_type": "data",
                    "content_encryption_algorithm": algos.EncryptionAlgorithm(
                        {"algorithm": cipher, "parameters": asn1.OctetString(iv)}
                    ),
                    "encrypted_content": ciphertext,
                }
            ),
        }
    )
    return cms.ContentInfo({"content_type": "enveloped_data", "content": enveloped})
