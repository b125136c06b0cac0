"""Webhook signatures: HMAC-SHA256 over the exact body bytes, hex, in one header.

A receiver recomputes the HMAC over the raw body it got, with the secret shown when the webhook
was created, and compares in constant time (`verify_signature` does that).
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Hikeshi-Signature"
PREFIX = "sha256="


def sign_body(secret: bytes, body: bytes) -> str:
    return PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header_value: str | None) -> bool:
    if not header_value:
        return False
    return hmac.compare_digest(sign_body(secret, body), header_value.strip())
