"""Real-shaped app files for tests: an APK (binary XML manifest, signed with the v1 JAR scheme or
the v2 APK Signing Block) and an .ipa (Payload/<name>.app/Info.plist). Built here, from the
formats' published layouts, so no binary fixture is checked in."""

from __future__ import annotations

import functools
import io
import plistlib
import struct
import zipfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from tests.support.pki import make_ca

ANDROID_NS = "http://schemas.android.com/apk/res/android"


def _chunk(chunk_type: int, header: bytes, body: bytes) -> bytes:
    header_size = 8 + len(header)
    return struct.pack("<HHI", chunk_type, header_size, header_size + len(body)) + header + body


def _string_pool(strings: list[str]) -> bytes:
    offsets, data = [], b""
    for text in strings:
        raw = text.encode("utf-8")
        offsets.append(len(data))
        data += bytes([len(text), len(raw)]) + raw + b"\x00"
    while len(data) % 4:
        data += b"\x00"
    strings_start = 28 + 4 * len(strings)
    header = struct.pack("<IIIII", len(strings), 0, 0x100, strings_start, 0)
    return _chunk(0x0001, header, b"".join(struct.pack("<I", o) for o in offsets) + data)


def binary_manifest(package: str, version_code: int, version_name: str) -> bytes:
    """AndroidManifest.xml as aapt writes it: string pool, resource map, namespace, <manifest>."""
    # Attribute names come first, in the order of the resource map (android:versionCode...).
    strings = [
        "versionCode",
        "versionName",
        "android",
        ANDROID_NS,
        "",
        "package",
        "manifest",
        version_name,
        package,
    ]
    index = {s: i for i, s in enumerate(strings)}
    resource_map = _chunk(0x0180, b"", struct.pack("<II", 0x0101021B, 0x0101021C))
    node = struct.pack("<II", 1, 0xFFFFFFFF)
    namespace = _chunk(0x0100, node, struct.pack("<II", index["android"], index[ANDROID_NS]))

    def attribute(ns: int, name: str, raw: int, data_type: int, data: int) -> bytes:
        return struct.pack("<IIIHBBI", ns, index[name], raw, 8, 0, data_type, data)

    attributes = [
        attribute(index[ANDROID_NS], "versionCode", 0xFFFFFFFF, 0x10, version_code),
        attribute(index[ANDROID_NS], "versionName", index[version_name], 0x03, index[version_name]),
        attribute(0xFFFFFFFF, "package", index[package], 0x03, index[package]),
    ]
    start = _chunk(
        0x0102,
        node,
        struct.pack("<IIHHHHHH", 0xFFFFFFFF, index["manifest"], 20, 20, len(attributes), 0, 0, 0)
        + b"".join(attributes),
    )
    end = _chunk(0x0103, node, struct.pack("<II", 0xFFFFFFFF, index["manifest"]))
    end_ns = _chunk(0x0101, node, struct.pack("<II", index["android"], index[ANDROID_NS]))
    return _chunk(0x0003, b"", _string_pool(strings) + resource_map + namespace + start + end + end_ns)


@functools.cache
def signer(label: str) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A self-signed developer certificate, as Android signing keys usually are."""
    return make_ca(f"Android developer {label}")


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def build_apk(
    package: str,
    version_code: int = 1,
    version_name: str = "1.0",
    *,
    signed_by: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
    scheme: str = "v2",
) -> bytes:
    cert, key = signed_by or signer("default")
    entries = {
        "AndroidManifest.xml": binary_manifest(package, version_code, version_name),
        "classes.dex": b"dex\n035\x00",
    }
    if scheme == "v1":
        manifest = b"Manifest-Version: 1.0\r\nCreated-By: hikeshi-tests\r\n\r\n"
        signature = (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(manifest)
            .add_signer(cert, key, hashes.SHA256())
            .sign(
                serialization.Encoding.DER,
                [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.NoAttributes],
            )
        )
        entries.update(
            {"META-INF/MANIFEST.MF": manifest, "META-INF/CERT.SF": manifest, "META-INF/CERT.RSA": signature}
        )
        return _zip(entries)
    return _with_v2_block(_zip(entries), cert, key)


def _lp(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


def _with_v2_block(apk: bytes, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> bytes:
    """Insert an APK Signing Block with one v2 signer before the central directory. The digest
    over the contents is a stand-in (the server does not recompute it; Android does)."""
    eocd = apk.rfind(b"PK\x05\x06")
    (cd_offset,) = struct.unpack_from("<I", apk, eocd + 16)
    digests = _lp(_lp(struct.pack("<I", 0x0103) + _lp(b"\x00" * 32)))
    certificates = _lp(_lp(cert.public_bytes(serialization.Encoding.DER)))
    signed_data = digests + certificates + _lp(b"")
    signature = key.sign(signed_data, padding.PKCS1v15(), hashes.SHA256())
    signatures = _lp(_lp(struct.pack("<I", 0x0103) + _lp(signature)))
    public_key = _lp(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    signer_block = _lp(signed_data) + signatures + public_key
    value = _lp(_lp(signer_block))
    pair = struct.pack("<QI", 4 + len(value), 0x7109871A) + value
    size = len(pair) + 8 + 16
    block = struct.pack("<Q", size) + pair + struct.pack("<Q", size) + b"APK Sig Block 42"
    new_cd_offset = cd_offset + len(block)
    tail = apk[cd_offset:]
    eocd_in_tail = eocd - cd_offset
    tail = tail[: eocd_in_tail + 16] + struct.pack("<I", new_cd_offset) + tail[eocd_in_tail + 20 :]
    return apk[:cd_offset] + block + tail


def build_ipa(bundle_id: str, version: str = "1.0", name: str = "Field App") -> bytes:
    info = {
        "CFBundleIdentifier": bundle_id,
        "CFBundleShortVersionString": version,
        "CFBundleVersion": "100",
        "CFBundleDisplayName": name,
        "MinimumOSVersion": "16.0",
    }
    return _zip(
        {
            "Payload/FieldApp.app/Info.plist": plistlib.dumps(info, fmt=plistlib.FMT_BINARY),
            "Payload/FieldApp.app/FieldApp": b"\xcf\xfa\xed\xfe",
        }
    )
