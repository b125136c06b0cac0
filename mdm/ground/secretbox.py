"""Encryption of secrets at rest (CA key, APNs key, unlock tokens, TOTP seeds).

AES-256-GCM with a key derived by HKDF from the instance secret (HIKESHI_SECRET_KEY or the
generated instance/secret_key). Each use has its own purpose label, so a value encrypted for one
purpose cannot be decrypted as another.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"


class SecretBoxError(ValueError):
    """A stored secret could not be decrypted: wrong key or altered data."""


def derive_key(secret: str, purpose: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"hikeshi-at-rest-v1", info=purpose.encode()
    ).derive(secret.encode())


def seal(secret: str, purpose: str, plaintext: bytes) -> bytes:
    nonce = os.urandom(12)
    return _VERSION + nonce + AESGCM(derive_key(secret, purpose)).encrypt(nonce, plaintext, purpose.encode())


def unseal(secret: str, purpose: str, sealed: bytes) -> bytes:
    if len(sealed) < 29 or sealed[:1] != _VERSION:
        raise SecretBoxError(f"stored {purpose} is not in a known format")
    try:
        return AESGCM(derive_key(secret, purpose)).decrypt(sealed[1:13], sealed[13:], purpose.encode())
    except Exception as exc:
        raise SecretBoxError(f"stored {purpose} cannot be decrypted with this instance's secret") from exc
