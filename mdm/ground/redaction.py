"""What counts as a secret in structured data, and how it is kept out of what we store and log.

One rule for the audit trail (mdm.ground.audit), raw device messages and command results kept as
evidence (DeviceMessage.raw, CommandResult.raw), and log records (mdm.ground.logsetup): a value under a
key that names a secret (password, passcode, token, challenge, PSK, key material, UnlockToken...)
is replaced by "[redacted]" at any depth, lists included.
"""

from __future__ import annotations

import hashlib
import json
import plistlib
import re
from functools import lru_cache
from typing import Any

REDACTED = "[redacted]"
# Values longer than this are kept as their digest: a whole profile in every queued command would
# say nothing more than its hash does (the command row keeps the bytes).
INLINE_LIMIT = 4096

# A key names a secret when its letters (case and separators ignored) contain one of these words
# or end with "key" (private_key, apnsKey, encrypted_key)...
_SECRET_WORDS = (
    "password",
    "passwd",
    "passphrase",
    "passcode",
    "secret",
    "token",
    "challenge",
    "psk",
    "credential",
    "otp",
    "seed",
    "magic",
    "pin",
)
# ...unless it names something about the secret rather than the secret itself: its row id, its
# size or kind, a count, a compliance flag (token_id, key_size, passcode_compliant,
# passwordMinimumLength). Booleans and None are never secret.
_DESCRIPTIVE_SUFFIXES = (
    "id",
    "ids",
    "uuid",
    "count",
    "size",
    "type",
    "length",
    "algorithm",
    "purpose",
    "prefix",
    "hint",
    "scope",
    "quality",
    "policies",
    "compliant",
    "compliance",
    "missing",
    "changed",
    "requested",
    "redacted",
    "fingerprint",
    "expires",
    "expiresat",
    "at",
    "update",
    "publickey",
    # AvailableOSUpdates names an update by its ProductKey: an identifier, not key material.
    "productkey",
    "attempts",
    "purge",
    "history",
    "age",
)
_LETTERS = re.compile(r"[^a-z0-9]")


@lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """Whether a details key names a secret value (see _SECRET_WORDS). Remembered: the same few
    hundred keys (a device's answers, audit details) are asked about on every request."""
    name = _LETTERS.sub("", key.lower())
    if not name or name.endswith(_DESCRIPTIVE_SUFFIXES):
        return False
    if name == "pin" or name.endswith("pin"):
        return True
    if name.endswith("key"):
        return True
    return any(word in name for word in _SECRET_WORDS if word != "pin")


def digest(value: str | bytes) -> dict[str, Any]:
    """The stand-in for a value too large to keep inline: its SHA-256 and size."""
    if isinstance(value, str):
        return {"sha256": hashlib.sha256(value.encode()).hexdigest(), "chars": len(value)}
    return {"sha256": hashlib.sha256(value).hexdigest(), "bytes": len(value)}


def redact(details: Any, *, digest_large: bool = True, keep: frozenset[str] = frozenset()) -> Any:
    """Audit details without secrets: every value under a secret-naming key, at any depth (lists
    included), becomes "[redacted]"; the fact that it was set stays visible. Long strings and
    bytes become their digest (unless `digest_large` is False: a raw device message keeps them)."""
    if isinstance(details, dict):
        clean: dict[str, Any] = {}
        for key, value in details.items():
            if (
                key not in keep
                and is_secret_key(str(key))
                and value not in (None, "")
                and not isinstance(value, bool)
            ):
                clean[key] = REDACTED
            else:
                clean[key] = redact(value, digest_large=digest_large, keep=keep)
        return clean
    if isinstance(details, (list, tuple)):
        return [redact(item, digest_large=digest_large, keep=keep) for item in details]
    if not digest_large:
        return details
    if isinstance(details, (bytes, bytearray, memoryview)):
        raw = bytes(details)
        return digest(raw) if len(raw) > INLINE_LIMIT else REDACTED
    if isinstance(details, str) and len(details) > INLINE_LIMIT:
        return digest(details)
    return details


# Push routing (APNs device token and PushMagic) is not a credential: the device row keeps both in
# clear to push at all, and the raw message keeps them as evidence of what the device reported.
RAW_MESSAGE_KEPT = frozenset({"Token", "PushMagic", "push_token"})

# Key names in an XML plist or a JSON object, to decide cheaply whether a message needs a look.
_PLIST_KEY = re.compile(rb"<key>([^<]{1,128})</key>")
_JSON_KEY = re.compile(rb'"([^"\\]{1,128})"\s*:')


def _names_a_secret(names: list[bytes]) -> bool:
    decoded = (name.decode("utf-8", "replace") for name in names)
    return any(name not in RAW_MESSAGE_KEPT and is_secret_key(name) for name in decoded)


def strip_raw_message(raw: bytes) -> bytes:
    """A device's message (plist or JSON) as received, but with every secret value replaced by
    "[redacted]". A message without one is returned byte for byte; one that cannot be parsed (the
    door parsed it before storing, so this does not happen) is returned unchanged."""
    if not raw:
        return raw
    data = bytes(raw)
    stripped = data.lstrip()
    if stripped.startswith((b"{", b"[")):
        if not _names_a_secret(_JSON_KEY.findall(data)):
            return data
        try:
            value = json.loads(data)
        except ValueError:
            return data
        return json.dumps(
            redact(value, digest_large=False, keep=RAW_MESSAGE_KEPT), ensure_ascii=False
        ).encode("utf-8")
    binary = data.startswith(b"bplist00")
    if not binary and not _names_a_secret(_PLIST_KEY.findall(data)):
        return data
    try:
        value = plistlib.loads(data)
    except Exception:
        return data
    clean = redact(value, digest_large=False, keep=RAW_MESSAGE_KEPT)
    if clean == value:
        return data
    return plistlib.dumps(clean, fmt=plistlib.FMT_BINARY if binary else plistlib.FMT_XML, sort_keys=False)
