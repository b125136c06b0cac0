"""What an Android agent request presents as its identity, read from its headers.

Either the request signature (headers Hikeshi-Certificate, Hikeshi-Timestamp, Hikeshi-Nonce,
Hikeshi-Signature; docs/android-agent-protocol.md, "Authentication") or, behind a
TLS-terminating proxy, the client certificate forwarded in the configured header. This module
only reads them: whether the credential is an enrolled device (its certificate, signature, nonce
and binding) is decided by the service (mdm.services.android_channel.identity), in the one call
the handler makes.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime

from werkzeug.datastructures import Headers

from mdm.doors.android.protocol import (
    CERTIFICATE_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signing_string,
)
from mdm.ground.identity.client_cert import parse_proxy_certificate
from mdm.ground.identity.signature import SignatureError
from mdm.services.android_channel import Credential, ForwardedCertificate, SignedRequest, Unauthenticated

_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
# base64url or hex, at least 22 characters: 128 random bits or more.
_NONCE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
MAX_SIGNATURE_CHARS = 2048  # base64 of a 4096-bit RSA signature is 684 characters


def read_credential(
    *, method: str, path: str, headers: Headers, body: bytes, client_cert_header: str | None
) -> Credential:
    """The credential the request presents, or Unauthenticated when it presents none readable."""
    if headers.get(SIGNATURE_HEADER):
        return _signed_request(method, path, headers, body)
    if client_cert_header and headers.get(client_cert_header):
        try:
            return ForwardedCertificate(parse_proxy_certificate(headers[client_cert_header]))
        except SignatureError as exc:
            raise Unauthenticated(str(exc)) from exc
    raise Unauthenticated(f"no {SIGNATURE_HEADER} header and no client certificate")


def _signed_request(method: str, path: str, headers: Headers, body: bytes) -> SignedRequest:
    fp = (headers.get(CERTIFICATE_HEADER) or "").strip().lower()
    if not _FINGERPRINT.match(fp):
        raise Unauthenticated(f"{CERTIFICATE_HEADER} must be the certificate's SHA-256 in hex")
    timestamp = (headers.get(TIMESTAMP_HEADER) or "").strip()
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise Unauthenticated(f"{TIMESTAMP_HEADER} must be Unix seconds", "timestamp_invalid")
    nonce = (headers.get(NONCE_HEADER) or "").strip()
    if not _NONCE.match(nonce):
        raise Unauthenticated(
            f"{NONCE_HEADER} must be 22 to 64 characters of A-Z a-z 0-9 _ -", "nonce_missing"
        )
    return SignedRequest(
        fingerprint=fp,
        sent_at=datetime.fromtimestamp(int(timestamp), UTC),
        nonce=nonce,
        signature=_decode_signature(headers.get(SIGNATURE_HEADER) or ""),
        signed=signing_string(method, path, timestamp, nonce, body),
    )


def _decode_signature(value: str) -> bytes:
    compact = value.strip()
    if not compact or len(compact) > MAX_SIGNATURE_CHARS:
        raise Unauthenticated(f"{SIGNATURE_HEADER} is empty or too long")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Unauthenticated(f"{SIGNATURE_HEADER} is not base64") from exc
