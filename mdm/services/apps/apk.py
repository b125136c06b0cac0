"""What an uploaded APK is: package name, version, and the certificate that signed it.

The manifest (binary XML) is decoded by apkInspector. The signing certificate is read from the
APK Signing Block (schemes v3, then v2: the block before the ZIP central directory), else from the
v1 JAR signature (META-INF/*.RSA|DSA|EC, a PKCS#7 SignedData read with asn1crypto). For a v2/v3
signer the signature over its signed data is verified with the certificate's key (cryptography),
so the certificate named is the one that signed. The digests over the APK's contents are checked
by Android's package manager at install; Hikeshi pins the file by its SHA-256.
"""

from __future__ import annotations

import hashlib
import io
import logging
import struct
import zipfile
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from mdm.ground.x509util import load_der_certificate

_APK_SIG_BLOCK_MAGIC = b"APK Sig Block 42"
_V2_ID = 0x7109871A
_V3_ID = 0xF05368C0
_EOCD = b"PK\x05\x06"
# Signature algorithm ids of the v2/v3 schemes (Android's ApkSigningBlockUtils).
_RSA_PSS = {0x0101: hashes.SHA256(), 0x0102: hashes.SHA512()}
_RSA_PKCS1 = {0x0103: hashes.SHA256(), 0x0104: hashes.SHA512(), 0x0421: hashes.SHA256()}
_ECDSA = {0x0201: hashes.SHA256(), 0x0202: hashes.SHA512(), 0x0423: hashes.SHA256()}


class ApkError(ValueError):
    """Not an APK Hikeshi can serve; the message says what is wrong."""


@dataclass(frozen=True)
class ApkFacts:
    package_name: str
    version_code: int | None
    version_name: str | None
    label: str | None
    sha256: str
    signing_cert_sha256: str
    signing_scheme: str


def read_apk(data: bytes) -> ApkFacts:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        manifest = archive.read("AndroidManifest.xml")
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ApkError("not an APK: no AndroidManifest.xml in a ZIP archive") from exc
    attributes = _manifest_attributes(manifest)
    package = attributes.get("package")
    if not isinstance(package, str) or not package:
        raise ApkError("the manifest names no package")
    found = _signing_block_certificate(data)
    if found is None:
        found = _jar_certificate(archive)
    if found is None:
        raise ApkError("the APK is not signed (no v2/v3 signing block, no META-INF signature)")
    certificate, scheme = found
    return ApkFacts(
        package_name=package,
        version_code=_integer(attributes.get("versionCode")),
        version_name=_text(attributes.get("versionName")),
        label=_text(attributes.get("label")),
        sha256=hashlib.sha256(data).hexdigest(),
        signing_cert_sha256=hashlib.sha256(certificate).hexdigest(),
        signing_scheme=scheme,
    )


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str | None:
    return value[:255] if isinstance(value, str) and value and not value.startswith("@") else None


def _axml() -> Any:
    """apkInspector's binary-XML reader, imported when first needed. Its module calls
    logging.basicConfig(level=DEBUG) at import: whatever that adds to the root logger is taken
    away again, so Hikeshi's own log setup (and level) stays as configured."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        from apkInspector import axml
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)
    return axml


def _manifest_attributes(manifest: bytes) -> dict[str, object]:
    """The attributes of the <manifest> element: strings as text, integers as int."""
    axml = _axml()
    try:
        parsed = axml.ManifestStruct.parse(io.BytesIO(manifest))
    except Exception as exc:  # apkInspector raises what its reader meets on a broken file
        raise ApkError("AndroidManifest.xml is not readable binary XML") from exc
    strings = parsed.string_pool.string_list
    for element in parsed.elements:
        if not isinstance(element, axml.XmlStartElement) or strings[element.attrext[1]] != "manifest":
            continue
        found: dict[str, object] = {}
        for attr in element.attributes:
            try:
                name = strings[attr.name_index]
            except (IndexError, TypeError):
                continue
            if attr.typed_value_datatype == 3:  # a string
                found[name] = strings[attr.typed_value_data]
            elif attr.typed_value_datatype in (16, 17):  # int (decimal or hex)
                found[name] = attr.typed_value_data
        return found
    raise ApkError("AndroidManifest.xml has no <manifest> element")


# -- APK Signing Block (v2, v3) ------------------------------------------------------------------


def _prefixed(buffer: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 4 > len(buffer):
        raise ApkError("the APK signing block is truncated")
    (length,) = struct.unpack_from("<I", buffer, offset)
    start = offset + 4
    if start + length > len(buffer):
        raise ApkError("the APK signing block is truncated")
    return buffer[start : start + length], start + length


def _sequence(buffer: bytes) -> list[bytes]:
    items, offset = [], 0
    while offset < len(buffer):
        item, offset = _prefixed(buffer, offset)
        items.append(item)
    return items


def signing_block_pairs(data: bytes) -> dict[int, bytes]:
    """The ID-value pairs of the APK Signing Block; {} when the APK has none."""
    eocd = data.rfind(_EOCD, max(0, len(data) - 65_557))
    if eocd < 0 or eocd + 22 > len(data):
        raise ApkError("not a ZIP archive: no end of central directory")
    (central_directory,) = struct.unpack_from("<I", data, eocd + 16)
    if central_directory < 32 or data[central_directory - 16 : central_directory] != _APK_SIG_BLOCK_MAGIC:
        return {}
    (size,) = struct.unpack_from("<Q", data, central_directory - 24)
    start = central_directory - size - 8
    if start < 0 or struct.unpack_from("<Q", data, start)[0] != size:
        raise ApkError("the APK signing block sizes do not agree")
    pairs: dict[int, bytes] = {}
    offset, end = start + 8, central_directory - 24
    while offset < end:
        (length,) = struct.unpack_from("<Q", data, offset)
        if length < 4 or offset + 8 + length > end:
            raise ApkError("the APK signing block is malformed")
        (pair_id,) = struct.unpack_from("<I", data, offset + 8)
        pairs[pair_id] = data[offset + 12 : offset + 8 + length]
        offset += 8 + length
    return pairs


def _signing_block_certificate(data: bytes) -> tuple[bytes, str] | None:
    pairs = signing_block_pairs(data)
    for pair_id, scheme in ((_V3_ID, "v3"), (_V2_ID, "v2")):
        if pair_id in pairs:
            return _first_signer_certificate(pairs[pair_id], scheme), scheme
    return None


def _first_signer_certificate(block: bytes, scheme: str) -> bytes:
    signers_bytes = _prefixed(block, 0)[0]
    signers = _sequence(signers_bytes)
    if not signers:
        raise ApkError(f"the {scheme} signature has no signer")
    signed_data, offset = _prefixed(signers[0], 0)
    if scheme == "v3":
        offset += 8  # minSdk, maxSdk
    signatures_bytes, offset = _prefixed(signers[0], offset)
    public_key_der, _ = _prefixed(signers[0], offset)
    _digests, inner = _prefixed(signed_data, 0)
    certificates = _sequence(_prefixed(signed_data, inner)[0])
    if not certificates:
        raise ApkError(f"the {scheme} signer has no certificate")
    certificate = load_der_certificate(certificates[0])
    key = certificate.public_key()
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if spki != public_key_der:
        raise ApkError(f"the {scheme} signer's public key is not its certificate's")
    for signature in _sequence(signatures_bytes):
        (algorithm,) = struct.unpack_from("<I", signature, 0)
        value, _ = _prefixed(signature, 4)
        if _verify(key, algorithm, value, signed_data):
            return certificates[0]
    raise ApkError(f"the {scheme} signer's signature does not verify with its certificate")


def _verify(key: object, algorithm: int, signature: bytes, message: bytes) -> bool:
    try:
        if isinstance(key, rsa.RSAPublicKey) and algorithm in _RSA_PKCS1:
            key.verify(signature, message, padding.PKCS1v15(), _RSA_PKCS1[algorithm])
        elif isinstance(key, rsa.RSAPublicKey) and algorithm in _RSA_PSS:
            digest = _RSA_PSS[algorithm]
            key.verify(signature, message, padding.PSS(padding.MGF1(digest), digest.digest_size), digest)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm in _ECDSA:
            key.verify(signature, message, ec.ECDSA(_ECDSA[algorithm]))
        else:
            return False
    except InvalidSignature:
        return False
    return True


# -- v1 (JAR) signature ---------------------------------------------------------------------------


def _jar_certificate(archive: zipfile.ZipFile) -> tuple[bytes, str] | None:
    for name in sorted(archive.namelist()):
        upper = name.upper()
        if not upper.startswith("META-INF/") or not upper.endswith((".RSA", ".DSA", ".EC")):
            continue
        try:
            signed = cms.ContentInfo.load(archive.read(name))["content"]
            certificates = signed["certificates"]
            signer = signed["signer_infos"][0]["sid"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ApkError(f"{name} is not a PKCS#7 signature") from exc
        for choice in certificates:
            certificate = choice.chosen
            if signer.name == "issuer_and_serial_number":
                wanted = signer.chosen
                if (
                    certificate.issuer == wanted["issuer"]
                    and certificate.serial_number == wanted["serial_number"].native
                ):
                    return certificate.dump(), "v1"
        raise ApkError(f"{name} does not hold its signer's certificate")
    return None
