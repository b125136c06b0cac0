"""Webhook signatures: a timestamp signed together with the body, so a captured delivery cannot
be replayed later (the scheme of Stripe's and Slack's webhooks).

    X-Hikeshi-Signature: t=1764990000,v1=<hex HMAC-SHA256 of "1764990000." + raw body>

The key is the secret shown once when the webhook was created. A receiver recomputes the HMAC
over `t`, a dot and the raw body it got, compares in constant time, and refuses a timestamp
more than five minutes from its own clock (docs/webhooks.md; `verify_signature` does all three).
Each attempt of a delivery is signed afresh with the time it is sent.
"""

from __future__ import annotations

import hashlib
import hmac

from mdm.ground import clock

SIGNATURE_HEADER = "X-Hikeshi-Signature"
TOLERANCE_SECONDS = 300


def _mac(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign_body(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    """The header value for `body` sent at `timestamp` (Unix seconds; default now)."""
    t = int(clock.now().timestamp()) if timestamp is None else timestamp
    return f"t={t},v1={_mac(secret, t, body)}"


def verify_signature(
    secret: bytes,
    body: bytes,
    header_value: str | None,
    *,
    now: int | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> bool:
    """What a receiver does: the signature is right and its timestamp is recent."""
    if not header_value:
        return False
    parts: dict[str, list[str]] = {}
    for item in header_value.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts.get("t", [""])[0])
    except ValueError:
        return False
    current = int(clock.now().timestamp()) if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = _mac(secret, timestamp, body)
    return any(hmac.compare_digest(expected, given) for given in parts.get("v1", []))
