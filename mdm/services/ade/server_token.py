"""The ABM server token: the key pair it is encrypted to, its upload, its expiry.

In Apple Business Manager an administrator adds an MDM server, uploads a public-key certificate
and downloads a "server token": an S/MIME message (`.p7m`) whose EnvelopedData, encrypted to that
certificate, holds a MIME part with the OAuth 1.0a credentials between `-----BEGIN MESSAGE-----`
and `-----END MESSAGE-----` as JSON (consumer_key, consumer_secret, access_token, access_secret,
access_token_expiry). Hikeshi generates the key pair (the key sealed in the database), decrypts
the upload with it and keeps the credentials sealed; only the expiry and names stay in clear.
The token lasts a year: like the push certificate it is renewed before it expires.
"""

from __future__ import annotations

import base64
import binascii
import email
import json
import re
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session

from enrollment import envelope
from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.config import Settings
from mdm.ground.models import AdeServerToken, AdeTokenKey
from mdm.ground.secretbox import SecretBoxError, seal, unseal
from mdm.ground.token_expiry import TokenNames, TokenWarning
from mdm.ground.token_expiry import expiry_warning as token_expiry_warning
from mdm.ground.x509util import fingerprint, self_signed_encryption_certificate, to_pem

KEY_PURPOSE = "ade-token-key"
SECRETS_PURPOSE = "ade-server-token"
KEY_SIZE = 2048
# ABM keeps the certificate with the MDM server; a new one is only needed for a new server.
CERT_DAYS = 3650
MAX_TOKEN_BYTES = 64 * 1024
_MESSAGE = re.compile(rb"-----BEGIN MESSAGE-----(.*?)-----END MESSAGE-----", re.DOTALL)
_FIELDS = ("consumer_key", "consumer_secret", "access_token", "access_secret", "access_token_expiry")


class ServerTokenError(ValueError):
    """The upload is not a server token this instance can read; the message says why."""


@dataclass(frozen=True)
class OAuthCredentials:
    consumer_key: str
    consumer_secret: str
    access_token: str
    access_secret: str
    access_token_expiry: datetime


# -- the key pair ABM encrypts to -------------------------------------------------------------


def current_token_key(session: Session) -> AdeTokenKey | None:
    return session.scalars(select(AdeTokenKey).order_by(AdeTokenKey.id.desc()).limit(1)).first()


def token_key_certificate(session: Session, settings: Settings, *, actor: Actor) -> AdeTokenKey:
    """The certificate to upload to ABM: the newest one, or a new key pair when there is none."""
    existing = current_token_key(session)
    if existing is not None:
        return existing
    return new_token_key(session, settings, actor=actor)


def new_token_key(session: Session, settings: Settings, *, actor: Actor) -> AdeTokenKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{settings.organization_name} ABM token"[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, settings.organization_name[:64]),
        ]
    )
    now = clock.now()
    cert = self_signed_encryption_certificate(key, name, now=now, days=CERT_DAYS)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    row = AdeTokenKey(
        fingerprint_sha256=fingerprint(cert),
        cert_pem=to_pem(cert),
        key_sealed=seal(settings.secret_key, KEY_PURPOSE, key_pem),
        not_after=cert.not_valid_after_utc,
        created_at=now,
        created_by=actor.name,
    )
    session.add(row)
    session.flush()
    record_event(
        session,
        actor,
        "ade.token_key_created",
        "ade_token_key",
        row.id,
        {"fingerprint": row.fingerprint_sha256},
    )
    return row


def _key_of(row: AdeTokenKey, settings: Settings) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(
            unseal(settings.secret_key, KEY_PURPOSE, row.key_sealed), None
        )
    except SecretBoxError as exc:
        raise ServerTokenError(str(exc)) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ServerTokenError("the stored ABM token key is not an RSA key")
    return key


# -- reading the upload --------------------------------------------------------------------------


def _enveloped(data: bytes) -> cms.EnvelopedData:
    """The EnvelopedData of an S/MIME message (what ABM sends), or of PEM / DER CMS."""
    if not data or len(data) > MAX_TOKEN_BYTES:
        raise ServerTokenError(f"token: empty or larger than {MAX_TOKEN_BYTES} bytes")
    raw = data
    if data[:1] != b"\x30":
        text = data.strip()
        if text.startswith(b"-----BEGIN"):
            body = b"".join(line for line in text.splitlines() if not line.startswith(b"-----"))
        else:
            message = email.message_from_bytes(text)
            payload = message.get_payload()
            if message.is_multipart() or not isinstance(payload, str):
                raise ServerTokenError("token: not an S/MIME message (one base64 part expected)")
            body = payload.encode("ascii", "replace")
        try:
            raw = base64.b64decode(b"".join(body.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ServerTokenError("token: the S/MIME body is not base64") from exc
    try:
        info = cms.ContentInfo.load(raw)
        if info["content_type"].native != "enveloped_data":
            raise ServerTokenError("token: not encrypted data (CMS EnvelopedData)")
        content = info["content"]
        content.native  # noqa: B018 - asn1crypto parses lazily; fail here, not later
        return content
    except (ValueError, TypeError, KeyError) as exc:
        raise ServerTokenError("token: not a CMS message") from exc


def _credentials(plaintext: bytes) -> OAuthCredentials:
    found = _MESSAGE.search(plaintext)
    if found is None:
        raise ServerTokenError("token: the decrypted text holds no BEGIN MESSAGE block")
    try:
        fields = json.loads(found.group(1).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ServerTokenError("token: the message is not JSON") from exc
    if not isinstance(fields, dict):
        raise ServerTokenError("token: the message is not a JSON object")
    for name in _FIELDS:
        if not isinstance(fields.get(name), str) or not fields[name]:
            raise ServerTokenError(f"token: {name} is missing")
    try:
        expiry = datetime.fromisoformat(fields["access_token_expiry"].replace("Z", "+00:00"))
    except ValueError as exc:
        raise ServerTokenError("token: access_token_expiry is not a date") from exc
    if expiry.tzinfo is None:
        raise ServerTokenError("token: access_token_expiry has no time zone")
    return OAuthCredentials(
        fields["consumer_key"],
        fields["consumer_secret"],
        fields["access_token"],
        fields["access_secret"],
        expiry,
    )


def decrypt_server_token(session: Session, settings: Settings, data: bytes) -> OAuthCredentials:
    """The credentials in an uploaded `.p7m`, opened with whichever of our keys it is for."""
    enveloped = _enveloped(data)
    keys = list(session.scalars(select(AdeTokenKey).order_by(AdeTokenKey.id.desc())))
    if not keys:
        raise ServerTokenError("token: no ABM key pair exists yet (download the certificate first)")
    for row in keys:
        cert = x509.load_pem_x509_certificate(row.cert_pem.encode())
        try:
            plaintext, _cipher = envelope.decrypt(enveloped, cert, _key_of(row, settings))
        except envelope.EnvelopeError as exc:
            if "not addressed" in str(exc):
                continue
            raise ServerTokenError(f"token: cannot be decrypted: {exc}") from exc
        return _credentials(plaintext)
    raise ServerTokenError(
        "token: encrypted to another certificate: upload this server's certificate to ABM "
        "and download the token again"
    )


def active_server_token(session: Session) -> AdeServerToken | None:
    return session.scalars(
        select(AdeServerToken)
        .where(AdeServerToken.active.is_(True))
        .order_by(AdeServerToken.id.desc())
        .limit(1)
    ).first()


def store_server_token(session: Session, settings: Settings, data: bytes, *, actor: Actor) -> AdeServerToken:
    """Decrypt and store an uploaded token; it replaces the active one. A renewal of the same
    MDM server (same consumer key) keeps the sync cursor."""
    credentials = decrypt_server_token(session, settings, data)
    if credentials.access_token_expiry <= clock.now():
        raise ServerTokenError(
            f"token: expired on {credentials.access_token_expiry:%Y-%m-%d}: download a new one from ABM"
        )
    current = active_server_token(session)
    sealed = seal(
        settings.secret_key,
        SECRETS_PURPOSE,
        json.dumps(
            {
                "consumer_secret": credentials.consumer_secret,
                "access_token": credentials.access_token,
                "access_secret": credentials.access_secret,
            }
        ).encode(),
    )
    same_server = current is not None and current.consumer_key == credentials.consumer_key
    row = AdeServerToken(
        consumer_key=credentials.consumer_key[:255],
        secrets_sealed=sealed,
        access_token_expiry=credentials.access_token_expiry,
        active=True,
        uploaded_at=clock.now(),
        uploaded_by=actor.name,
        cursor=current.cursor if same_server and current else None,
        fetched_until=current.fetched_until if same_server and current else None,
        server_name=current.server_name if same_server and current else None,
        server_uuid=current.server_uuid if same_server and current else None,
        org_name=current.org_name if same_server and current else None,
    )
    if current is not None:
        current.active = False
    session.add(row)
    session.flush()
    record_event(
        session,
        actor,
        "ade.server_token_uploaded",
        "ade_server_token",
        row.id,
        {
            "consumer_key": row.consumer_key,
            "access_token_expiry": row.access_token_expiry.isoformat(),
            "replaced": current.id if current else None,
            "same_server": same_server,
        },
    )
    return row


def credentials_of(row: AdeServerToken, settings: Settings) -> OAuthCredentials:
    values = json.loads(unseal(settings.secret_key, SECRETS_PURPOSE, row.secrets_sealed))
    return OAuthCredentials(
        row.consumer_key,
        values["consumer_secret"],
        values["access_token"],
        values["access_secret"],
        row.access_token_expiry,
    )


NAMES = TokenNames("ABM サーバートークン", "The ABM server token", "ABM")


def expiry_warning(row: AdeServerToken | None) -> TokenWarning | None:
    """What operators must be told about the token: expired, or expiring within 30 days."""
    return None if row is None else token_expiry_warning(row.access_token_expiry, NAMES)
