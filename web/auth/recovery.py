"""One-time recovery codes for a user who lost the authenticator. Only keyed hashes are kept."""

from __future__ import annotations

import hashlib
import hmac
import secrets

COUNT = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def new_codes(count: int = COUNT) -> list[str]:
    """Codes like `k7p2m-xq9rt` (about 49 bits each): plenty for a one-time, rate-limited factor."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def normalize(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def code_hash(secret_key: str, code: str) -> str:
    return hmac.new(secret_key.encode(), b"recovery:" + normalize(code).encode(), hashlib.sha256).hexdigest()
