"""Requesting the APNs push certificate from Apple: the key, the CSR, and what the portal takes.

Apple's Push Certificates Portal (identity.apple.com) accepts only a CSR signed by an MDM vendor:
a base64 text holding a plist with the CSR (`PushCertRequestCSR`, DER in base64), the vendor's
certificate chain up to Apple's root (`PushCertCertificateChain`, PEM) and the vendor's
SHA256-with-RSA signature over the DER CSR (`PushCertSignature`, base64). An HQ either holds an
MDM vendor certificate itself (`vendor_signed_request`) or sends the CSR to a community signing
service, which answers that same text encrypted to a certificate of ours
(`decrypt_signed_request`).

The private key never leaves the instance: it is sealed (mdm.ground.secretbox) into the instance
folder, named by the SHA-256 of its public key, until Apple's certificate comes back; then
`certificate_with_stored_key` finds it by the certificate's public key, and the import stores it
sealed in the database like every push key. The instance folder is in every backup.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import plistlib
import re
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID
from sqlalchemy.orm import Session

from enrollment import envelope
from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.config import Settings
from mdm.ground.push.certificates import (
    LoadedPushCertificate,
    PushCertificateError,
    active_push_certificate,
    decrypt_key,
    read_push_certificate,
)
from mdm.ground.secretbox import SecretBoxError, seal, unseal
from mdm.ground.x509util import (
    load_der_certificate,
    load_der_csr,
    load_pem_bundle,
    load_pem_certificate,
    self_signed_encryption_certificate,
)

KEY_PURPOSE = "apns-push-request-key"
REQUEST_FOLDER = "push-cert-requests"
KEY_SIZE = 2048
PORTAL_URL = "https://identity.apple.com/pushcert/"
# The encryption certificate only has to outlive the round trip to the signing service.
ENCRYPTION_CERT_DAYS = 30
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class PushRequestError(ValueError):
    """The request cannot be made or read; the message names the file or option at fault."""


@dataclass(frozen=True)
class PendingRequest:
    key_id: str  # SHA-256 of the public key (SubjectPublicKeyInfo), hex
    key: rsa.RSAPrivateKey
    csr: x509.CertificateSigningRequest

    @property
    def csr_pem(self) -> bytes:
        return self.csr.public_bytes(serialization.Encoding.PEM)

    @property
    def csr_der(self) -> bytes:
        return self.csr.public_bytes(serialization.Encoding.DER)


def key_id_of(public_key: PublicKeyTypes) -> str:
    return hashlib.sha256(public_key.public_bytes(*_SPKI)).hexdigest()


def _folder(settings: Settings) -> Path:
    return settings.instance_path / REQUEST_FOLDER


def _key_path(settings: Settings, key_id: str) -> Path:
    return _folder(settings) / f"{key_id}.key.sealed"


def _encryption_cert_path(settings: Settings, key_id: str) -> Path:
    return _folder(settings) / f"{key_id}.encryption.pem"


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def new_request(
    session: Session,
    settings: Settings,
    *,
    actor: Actor,
    common_name: str | None = None,
    email: str | None = None,
) -> PendingRequest:
    """A new key (sealed into the instance folder) and its CSR; audited."""
    if email is not None and not re.fullmatch(r"[!-~]{1,64}@[!-~]{1,190}", email):
        raise PushRequestError(f"--email: {email!r} is not an e-mail address (ASCII, name@domain)")
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
    attributes = [
        x509.NameAttribute(NameOID.COMMON_NAME, (common_name or f"{settings.organization_name} MDM")[:64]),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, settings.organization_name[:64]),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
    ]
    if email:
        attributes.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, email))
    csr = (
        x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes)).sign(key, hashes.SHA256())
    )
    key_id = key_id_of(key.public_key())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(_key_path(settings, key_id), seal(settings.secret_key, KEY_PURPOSE, key_pem))
    current = active_push_certificate(session)
    record_event(
        session,
        actor,
        "push_certificate.requested",
        "push_certificate_request",
        key_id[:16],
        {
            "key_sha256": key_id,
            "subject": csr.subject.rfc4514_string(),
            "renews": current.topic if current else None,
        },
    )
    return PendingRequest(key_id, key, csr)


def _stored_key(settings: Settings, key_id: str) -> rsa.RSAPrivateKey | None:
    path = _key_path(settings, key_id)
    if not path.is_file():
        return None
    try:
        key = serialization.load_pem_private_key(
            unseal(settings.secret_key, KEY_PURPOSE, path.read_bytes()), None
        )
    except SecretBoxError as exc:
        raise PushRequestError(f"{path}: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PushRequestError(f"{path} does not hold an RSA key")
    return key


def pending_key_ids(settings: Settings) -> list[str]:
    folder = _folder(settings)
    if not folder.is_dir():
        return []
    return sorted(p.name.split(".", 1)[0] for p in folder.glob("*.key.sealed"))


def forget_request(settings: Settings, key_id: str) -> None:
    """Remove a pending key once its certificate is imported (the database holds it, sealed)."""
    for path in (_key_path(settings, key_id), _encryption_cert_path(settings, key_id)):
        path.unlink(missing_ok=True)
    for name in KEPT_FILES:
        (_folder(settings) / f"{key_id}.{name}").unlink(missing_ok=True)


# -- what the console keeps for download (nothing secret: the CSR and the signed request) ----------

CSR_FILE = "csr.pem"
UPLOAD_FILE = "upload.b64"
KEPT_FILES = (CSR_FILE, UPLOAD_FILE)
_KEY_ID = re.compile(r"^[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class PendingRequestInfo:
    key_id: str
    community: bool  # prepared for a signing service (it has an encryption certificate)
    has_upload: bool  # the file for Apple's portal is ready (vendor-signed, or decrypted)
    created_at: float  # the key file's time (seconds since the epoch)


def valid_key_id(key_id: str) -> bool:
    return bool(_KEY_ID.match(key_id))


def keep_request_file(settings: Settings, key_id: str, name: str, data: bytes) -> None:
    if not valid_key_id(key_id) or name not in KEPT_FILES:
        raise PushRequestError("unknown request file")
    _write_private(_folder(settings) / f"{key_id}.{name}", data)


def request_file(settings: Settings, key_id: str, name: str) -> bytes | None:
    """A kept file of a pending request (CSR, upload, encryption certificate), or None."""
    if not valid_key_id(key_id) or not _key_path(settings, key_id).is_file():
        return None
    if name == "encryption.pem":
        path = _encryption_cert_path(settings, key_id)
    elif name in KEPT_FILES:
        path = _folder(settings) / f"{key_id}.{name}"
    else:
        return None
    return path.read_bytes() if path.is_file() else None


def pending_requests(settings: Settings) -> list[PendingRequestInfo]:
    """The requests whose certificate has not come back yet, newest first."""
    found = []
    for key_id in pending_key_ids(settings):
        if not valid_key_id(key_id):
            continue
        found.append(
            PendingRequestInfo(
                key_id=key_id,
                community=_encryption_cert_path(settings, key_id).is_file(),
                has_upload=(_folder(settings) / f"{key_id}.{UPLOAD_FILE}").is_file(),
                created_at=_key_path(settings, key_id).stat().st_mtime,
            )
        )
    return sorted(found, key=lambda info: info.created_at, reverse=True)


def vendor_configured(settings: Settings) -> bool:
    return bool(settings.push_vendor_cert_file and settings.push_vendor_key_file)


def vendor_signed_from_settings(settings: Settings, pending: PendingRequest) -> bytes:
    """The portal upload signed with the vendor certificate and key the settings name."""
    paths = {
        "HIKESHI_PUSH_VENDOR_CERT_FILE": settings.push_vendor_cert_file,
        "HIKESHI_PUSH_VENDOR_KEY_FILE": settings.push_vendor_key_file,
    }
    data: dict[str, bytes] = {}
    for name, path in paths.items():
        if not path:
            raise PushRequestError(f"{name} is not set")
        try:
            data[name] = Path(path).read_bytes()
        except OSError as exc:
            raise PushRequestError(f"{name}: cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return vendor_signed_request(
            pending, data["HIKESHI_PUSH_VENDOR_CERT_FILE"], data["HIKESHI_PUSH_VENDOR_KEY_FILE"]
        )
    except PushRequestError as exc:
        # The CLI's option names, as the settings name them here.
        message = str(exc).replace("--vendor-cert", "HIKESHI_PUSH_VENDOR_CERT_FILE")
        raise PushRequestError(message.replace("--vendor-key", "HIKESHI_PUSH_VENDOR_KEY_FILE")) from exc


# -- vendor-signed request -------------------------------------------------------------------------


def _load_chain(data: bytes, what: str) -> list[x509.Certificate]:
    try:
        chain = load_pem_bundle(data) if b"-----BEGIN" in data else [load_der_certificate(data)]
    except ValueError as exc:
        raise PushRequestError(f"{what}: not a PEM or DER certificate") from exc
    return chain


def _ordered_chain(chain: list[x509.Certificate], what: str) -> list[x509.Certificate]:
    """The vendor certificate first, then each issuer up to a self-signed root (Apple's portal
    wants the whole chain, root included)."""
    leaf = chain[0]
    rest = chain[1:]
    ordered = [leaf]
    while ordered[-1].issuer != ordered[-1].subject:
        issuer = next((c for c in rest if c.subject == ordered[-1].issuer), None)
        if issuer is None:
            raise PushRequestError(
                f"{what}: the chain stops at {ordered[-1].subject.rfc4514_string()}; add its issuer "
                "(Apple's WWDR intermediate) and Apple's root certificate to the file, in PEM"
            )
        try:
            ordered[-1].verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise PushRequestError(
                f"{what}: {ordered[-1].subject.rfc4514_string()} is not signed by "
                f"{issuer.subject.rfc4514_string()}"
            ) from exc
        ordered.append(issuer)
        rest.remove(issuer)
    return ordered


def vendor_signed_request(
    pending: PendingRequest, vendor_chain: bytes, vendor_key: bytes, password: bytes | None = None
) -> bytes:
    """The base64 text to upload at identity.apple.com, signed with the MDM vendor's key."""
    chain = _ordered_chain(_load_chain(vendor_chain, "--vendor-cert"), "--vendor-cert")
    try:
        key = serialization.load_pem_private_key(vendor_key, password)
    except (ValueError, TypeError) as exc:
        raise PushRequestError("--vendor-key: no readable PEM private key (wrong password?)") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PushRequestError("--vendor-key: Apple's MDM vendor signing key is RSA; this is not")
    if key.public_key().public_bytes(*_SPKI) != chain[0].public_key().public_bytes(*_SPKI):
        raise PushRequestError("--vendor-key does not belong to the first certificate of --vendor-cert")
    if chain[0].not_valid_after_utc <= clock.now():
        raise PushRequestError(
            f"--vendor-cert: the MDM vendor certificate expired on {chain[0].not_valid_after_utc:%Y-%m-%d}"
        )
    signature = key.sign(pending.csr_der, padding.PKCS1v15(), hashes.SHA256())
    request = {
        "PushCertRequestCSR": base64.b64encode(pending.csr_der).decode(),
        # PEM lines of 64 characters, as the portal requires; cryptography writes exactly that.
        "PushCertCertificateChain": b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in chain
        ).decode(),
        "PushCertSignature": base64.b64encode(signature).decode(),
    }
    return base64.b64encode(plistlib.dumps(request, fmt=plistlib.FMT_XML))


def read_signed_request(data: bytes) -> dict[str, str]:
    """The plist inside a portal upload (base64 text), checked for the three keys."""
    try:
        inner = base64.b64decode(b"".join(data.split()), validate=True)
        request = plistlib.loads(inner)
    except (binascii.Error, ValueError, plistlib.InvalidFileException) as exc:
        raise PushRequestError("not a push certificate request (base64 of a plist)") from exc
    keys = ("PushCertRequestCSR", "PushCertCertificateChain", "PushCertSignature")
    if not isinstance(request, dict) or any(not isinstance(request.get(k), str) for k in keys):
        raise PushRequestError(f"the push certificate request must hold {', '.join(keys)}")
    return {k: request[k] for k in keys}


def _check_vendor_signature(request: dict[str, str], csr_der: bytes) -> None:
    """The service's signature verifies with the first certificate of its chain, so a damaged
    answer is caught here rather than by Apple's portal. Apple documented SHA-1 first, SHA-256 now."""
    leaf = _load_chain(request["PushCertCertificateChain"].encode(), "PushCertCertificateChain")[0]
    public_key = leaf.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise PushRequestError("the signing service's certificate does not hold an RSA key")
    signature = base64.b64decode(request["PushCertSignature"])
    for digest in (hashes.SHA256(), hashes.SHA1()):  # noqa: S303 - only verifying what the service chose
        try:
            public_key.verify(signature, csr_der, padding.PKCS1v15(), digest)
            return
        except InvalidSignature:
            continue
    raise PushRequestError("the signing service's signature does not verify over the CSR")


# -- community signing service ---------------------------------------------------------------------


def encryption_certificate(settings: Settings, pending: PendingRequest) -> x509.Certificate:
    """A short-lived self-signed certificate of the request's own key: the signing service
    encrypts its answer to it, so only this instance can open it."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{settings.organization_name} push request")])
    cert = self_signed_encryption_certificate(
        pending.key, name, now=clock.now(), days=ENCRYPTION_CERT_DAYS, data_encipherment=True
    )
    _encryption_cert_path(settings, pending.key_id).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert


_HEX = re.compile(rb"^[0-9a-fA-F\s]+$")


def _enveloped(data: bytes) -> cms.EnvelopedData:
    """The encrypted answer as a service may send it: DER, PEM, base64 or hex (mdmcert.download)."""
    # DER is taken as it is: stripping "whitespace" would cut a final 0x0a or 0x20 byte off it.
    raw = data if data[:1] == b"\x30" else data.strip()
    if raw.startswith(b"-----BEGIN"):
        raw = b"".join(line for line in raw.splitlines() if not line.startswith(b"-----"))
    if raw[:1] != b"\x30":
        try:
            raw = (
                bytes.fromhex(raw.decode())
                if _HEX.match(raw)
                else base64.b64decode(b"".join(raw.split()), validate=True)
            )
        except (ValueError, UnicodeDecodeError) as exc:
            raise PushRequestError("the encrypted answer is not DER, PEM, base64 or hex") from exc
    try:
        info = cms.ContentInfo.load(raw)
        if info["content_type"].native != "enveloped_data":
            raise PushRequestError("the answer is not encrypted data (CMS EnvelopedData)")
        return info["content"]
    except (ValueError, TypeError, KeyError) as exc:
        raise PushRequestError("the encrypted answer is not a CMS message") from exc


def decrypt_signed_request(settings: Settings, data: bytes) -> tuple[bytes, str]:
    """(the portal upload, key id) from a signing service's encrypted answer, opened with the
    stored key it is addressed to; the CSR inside must be ours."""
    enveloped = _enveloped(data)
    for key_id in pending_key_ids(settings):
        cert_path = _encryption_cert_path(settings, key_id)
        key = _stored_key(settings, key_id)
        if key is None or not cert_path.is_file():
            continue
        cert = load_pem_certificate(cert_path.read_bytes())
        try:
            plaintext, _cipher = envelope.decrypt(enveloped, cert, key)
        except envelope.EnvelopeError as exc:
            if "not addressed" in str(exc):
                continue
            raise PushRequestError(f"the encrypted answer cannot be opened: {exc}") from exc
        request = read_signed_request(plaintext)
        csr_der = base64.b64decode(request["PushCertRequestCSR"])
        if key_id_of(load_der_csr(csr_der).public_key()) != key_id:
            raise PushRequestError("the signed request inside is for another CSR than the one sent")
        _check_vendor_signature(request, csr_der)
        return plaintext.strip() + b"\n", key_id
    raise PushRequestError(
        "the encrypted answer is addressed to none of this instance's pending requests "
        "(run `hikeshi push-cert request --community` here first)"
    )


# -- Apple's certificate back ------------------------------------------------------------------------


def holds_certificate_only(data: bytes) -> bool:
    """A PEM or DER certificate without a key: what Apple's portal hands back. (PKCS#12, which
    is DER too, and PEM with a key go through read_push_certificate.)"""
    if b"-----BEGIN" in data:
        return b"PRIVATE KEY-----" not in data and b"-----BEGIN CERTIFICATE-----" in data
    try:
        load_der_certificate(data)
    except ValueError:
        return False
    return True


def certificate_with_stored_key(
    session: Session, settings: Settings, data: bytes
) -> tuple[LoadedPushCertificate, str | None]:
    """Apple's certificate (PEM or DER, no key) with the key this instance keeps for it: a
    pending request's, or the active certificate's (a renewal that reused it). Returns the
    pending key id to forget after the import commits, or None."""
    cert = _load_chain(data, "certificate")[0]
    key_id = key_id_of(cert.public_key())
    key = _stored_key(settings, key_id)
    pending: str | None = key_id
    if key is None:
        pending = None
        current = active_push_certificate(session)
        if (
            current is not None
            and key_id_of(load_pem_certificate(current.cert_pem.encode()).public_key()) == key_id
        ):
            key_pem = decrypt_key(current, settings.secret_key)
        else:
            raise PushCertificateError(
                "the file holds no private key, and no key on this instance matches the certificate: import "
                "the certificate Apple issued for the request made here (`hikeshi push-cert request`), or a "
                "PEM/PKCS#12 file with its private key"
            )
    else:
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    return read_push_certificate(cert.public_bytes(serialization.Encoding.PEM) + key_pem), pending


# -- what to do next, in Japanese and English ----------------------------------------------------------


def instructions(*, vendor_signed: bool, upload_file: str | None, renews_topic: str | None) -> str:
    """Step-by-step text for the HQ's administrator."""
    if renews_topic:
        ja_portal = (
            f"現在の証明書（トピック {renews_topic}）を作成したのと同じ Apple ID でサインインし、"
            "一覧のその証明書の「更新 (Renew)」を選びます。新しい証明書を「作成 (Create)」しないでください："
            "トピックが変わり、登録済みの全端末が再登録になります。"
        )
        en_portal = (
            f"Sign in with the same Apple ID that created the current certificate (topic {renews_topic}) "
            "and choose Renew on that certificate. Never create a new certificate: its topic would differ "
            "and every enrolled device would have to enroll again."
        )
    else:
        ja_portal = (
            "組織で管理する Apple ID（個人のものではなく、退職などで失われないもの）でサインインし、"
            "「証明書を作成 (Create a Certificate)」を選びます。この Apple ID を記録してください。"
            "毎年の更新は必ず同じ Apple ID で行い、新しい証明書を作成しないでください。"
        )
        en_portal = (
            "Sign in with an Apple ID the organisation owns (not a person's, so it outlives staff "
            "changes) and choose Create a Certificate. Write that Apple ID down: renew every year with "
            "the same Apple ID, never create a new certificate."
        )
    upload = upload_file or "push-request.b64"
    if vendor_signed:
        ja_first = [f"アップロード用ファイル {upload} ができました（MDM ベンダー証明書で署名済み）。"]
        en_first = [f"The upload file {upload} is ready (signed with the MDM vendor certificate)."]
    else:
        ja_first = [
            "CSR（push-request.csr）と暗号化用証明書（push-request-encryption.pem）を署名サービスに送ります。",
            "サービスから届いた暗号化ファイルを "
            "`hikeshi push-cert decrypt ファイル --out push-request.b64` で復号します。",
        ]
        en_first = [
            "Send the CSR (push-request.csr) and the encryption certificate (push-request-encryption.pem) "
            "to the signing service.",
            "Decrypt the file it sends back: `hikeshi push-cert decrypt FILE --out push-request.b64`.",
        ]
    ja = [
        *ja_first,
        f"{PORTAL_URL} を開きます。{ja_portal}",
        f"{upload} をアップロードし、Apple の証明書（.pem）をダウンロードします。",
        "`hikeshi push-cert import ダウンロードした.pem` で取り込みます"
        "（秘密鍵はこのサーバーが保管しています）。",
        "有効期限は 1 年です。期限の 30 日前から警告が出ます。",
    ]
    en = [
        *en_first,
        f"Open {PORTAL_URL}. {en_portal}",
        f"Upload {upload} and download Apple's certificate (.pem).",
        "Import it: `hikeshi push-cert import DOWNLOADED.pem` (this server keeps the private key).",
        "It is valid for one year; warnings start 30 days before it expires.",
    ]
    lines = ["次の手順 (日本語):"]
    lines += [f"  {n}. {step}" for n, step in enumerate(ja, 1)]
    lines.append("Next steps (English):")
    lines += [f"  {n}. {step}" for n, step in enumerate(en, 1)]
    return "\n".join(lines)
