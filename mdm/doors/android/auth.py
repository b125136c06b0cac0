"""Who is speaking on the Android agent channel: the device bound to the request's certificate.

An agent proves its identity on every request after enrollment in one of two ways:

- a signature with its identity key over the method, path, a timestamp, a nonce and the SHA-256
  of the body (headers Hikeshi-Certificate, Hikeshi-Timestamp, Hikeshi-Nonce, Hikeshi-Signature);
  each nonce is accepted once (stored in the database, so every server process sees it) and the
  timestamp may be at most the configured skew in the past and a small skew in the future, so a
  captured request cannot be replayed;
- behind a TLS-terminating proxy, the client certificate forwarded in the configured header.

Either way the certificate must chain to a trusted device CA, be valid now, be recorded and bound
to exactly one Android device, and not be revoked. The device is taken from that binding, never
from anything the request says, so a device can never act as another (DESIGN.md invariant 3).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.datastructures import Headers

from mdm.doors.android.protocol import (
    CERTIFICATE_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signing_string,
)
from mdm.ground import clock
from mdm.ground.config import Settings
from mdm.ground.identity.client_cert import parse_proxy_certificate
from mdm.ground.identity.signature import SignatureError
from mdm.ground.identity.trust import verify_device_certificate
from mdm.ground.models import AgentRequestNonce, Device, DeviceCertificate, EnrollmentState, IdentityPurpose
from mdm.ground.x509util import fingerprint
from mdm.services.android_channel import PLATFORM, ProtocolError

_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
# base64url or hex, at least 22 characters: 128 random bits or more.
_NONCE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
MAX_SIGNATURE_CHARS = 2048  # base64 of a 4096-bit RSA signature is 684 characters


class Unauthenticated(ProtocolError):
    def __init__(self, reason: str, code: str = "invalid_credentials") -> None:
        # The full reason is logged; the agent learns a stable reason code (body "reason"), enough
        # to fix its clock or its nonces, nothing about other devices.
        super().__init__(401, "unauthenticated", "device authentication failed")
        self.reason = reason
        self.reason_code = code


@dataclass(frozen=True)
class AuthenticatedDevice:
    device: Device
    certificate: DeviceCertificate


def authenticate(
    session: Session,
    settings: Settings,
    *,
    method: str,
    path: str,
    headers: Headers,
    body: bytes,
) -> AuthenticatedDevice:
    """The enrolled Android device this request speaks for, or Unauthenticated / ProtocolError."""
    if headers.get(SIGNATURE_HEADER):
        row, cert = _signed_request(session, settings, method, path, headers, body)
    elif settings.client_cert_header and headers.get(settings.client_cert_header):
        row, cert = _proxy_certificate(session, headers[settings.client_cert_header])
    else:
        raise Unauthenticated(f"no {SIGNATURE_HEADER} header and no client certificate")
    try:
        verify_device_certificate(session, settings, cert)
    except SignatureError as exc:
        raise Unauthenticated(str(exc)) from exc
    if row.revoked_at is not None:
        raise Unauthenticated("certificate has been revoked", "certificate_revoked")
    if row.purpose != IdentityPurpose.ANDROID_AGENT:
        raise Unauthenticated(
            f"a {row.purpose} certificate is not an Android agent identity", "certificate_purpose"
        )
    device = session.get(Device, row.device_id) if row.device_id is not None else None
    if device is None or device.platform != PLATFORM:
        raise Unauthenticated("certificate is not bound to an Android device")
    if device.enrollment_state != EnrollmentState.ENROLLED:
        raise ProtocolError(
            403, "device_not_enrolled", f"the device is {device.enrollment_state}; enroll it again"
        )
    return AuthenticatedDevice(device, row)


def _certificate_row(session: Session, fp: str) -> DeviceCertificate | None:
    return session.scalars(
        select(DeviceCertificate).where(DeviceCertificate.fingerprint_sha256 == fp)
    ).first()


def _signed_request(
    session: Session,
    settings: Settings,
    method: str,
    path: str,
    headers: Headers,
    body: bytes,
) -> tuple[DeviceCertificate, x509.Certificate]:
    fp = (headers.get(CERTIFICATE_HEADER) or "").strip().lower()
    if not _FINGERPRINT.match(fp):
        raise Unauthenticated(f"{CERTIFICATE_HEADER} must be the certificate's SHA-256 in hex")
    timestamp = (headers.get(TIMESTAMP_HEADER) or "").strip()
    sent = _check_timestamp(
        timestamp,
        settings.android_signature_max_skew_seconds,
        settings.android_signature_future_skew_seconds,
    )
    nonce = (headers.get(NONCE_HEADER) or "").strip()
    if not _NONCE.match(nonce):
        raise Unauthenticated(
            f"{NONCE_HEADER} must be 22 to 64 characters of A-Z a-z 0-9 _ -", "nonce_missing"
        )
    signature = _decode_signature(headers.get(SIGNATURE_HEADER) or "")
    row = _certificate_row(session, fp)
    if row is None:
        raise Unauthenticated("unknown certificate")
    cert = x509.load_pem_x509_certificate(row.pem.encode())
    _verify(cert, signature, signing_string(method, path, timestamp, nonce, body))
    forget_at = sent + timedelta(seconds=settings.android_signature_max_skew_seconds)
    _remember_nonce(session, row, nonce, forget_at)
    return row, cert


def _remember_nonce(session: Session, row: DeviceCertificate, nonce: str, expires_at: datetime) -> None:
    """Accept a nonce once. The unique index decides between server processes: a concurrent
    replay waits for the first request's commit and then fails here."""
    now = clock.now()
    # Past its expiry the timestamp check refuses a replay on its own; forget this device's old ones.
    session.execute(
        delete(AgentRequestNonce).where(
            AgentRequestNonce.device_certificate_id == row.id, AgentRequestNonce.expires_at < now
        )
    )
    session.add(
        AgentRequestNonce(nonce=nonce, device_certificate_id=row.id, seen_at=now, expires_at=expires_at)
    )
    try:
        session.flush()
    except IntegrityError as exc:
        raise Unauthenticated(f"nonce {nonce} was already used", "replayed") from exc


def purge_expired_nonces(session: Session) -> int:
    """Scheduler job: drop every nonce whose request could no longer pass the timestamp check."""
    result = session.execute(delete(AgentRequestNonce).where(AgentRequestNonce.expires_at < clock.now()))
    return int(getattr(result, "rowcount", 0) or 0)


def _proxy_certificate(session: Session, value: str) -> tuple[DeviceCertificate, x509.Certificate]:
    try:
        cert = parse_proxy_certificate(value)
    except SignatureError as exc:
        raise Unauthenticated(str(exc)) from exc
    row = _certificate_row(session, fingerprint(cert))
    if row is None:
        raise Unauthenticated("unknown certificate")
    return row, cert


def _check_timestamp(value: str, past_skew: int, future_skew: int) -> datetime:
    if not value.isdigit() or len(value) > 12:
        raise Unauthenticated(f"{TIMESTAMP_HEADER} must be Unix seconds", "timestamp_invalid")
    sent = datetime.fromtimestamp(int(value), UTC)
    age = (clock.now() - sent).total_seconds()
    if age > past_skew:
        # Bounds how long a nonce must be remembered, and catches a wrong device clock.
        raise Unauthenticated("request timestamp is too old", "timestamp_too_old")
    if -age > future_skew:
        # A request dated ahead would stay replayable longer than the window says.
        raise Unauthenticated("request timestamp is in the future", "timestamp_in_future")
    return sent


def _decode_signature(value: str) -> bytes:
    compact = value.strip()
    if not compact or len(compact) > MAX_SIGNATURE_CHARS:
        raise Unauthenticated(f"{SIGNATURE_HEADER} is empty or too long")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Unauthenticated(f"{SIGNATURE_HEADER} is not base64") from exc


def _verify(cert: x509.Certificate, signature: bytes, signed: bytes) -> None:
    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
        else:
            raise Unauthenticated("certificate key type is not supported")
    except InvalidSignature as exc:
        raise Unauthenticated("signature does not match the request", "bad_signature") from exc
