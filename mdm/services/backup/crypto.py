"""Encryption of backup archives: AES-256-GCM with a key from a passphrase (scrypt) or a key file.

The key is never written beside the backup. The file layout is a magic line, a JSON header with
the KDF parameters and nonce (authenticated as associated data), then the ciphertext.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MAGIC = b"HIKESHI-BACKUP-1\n"
SCRYPT_N = 2**15


class BackupKeyError(ValueError):
    """The backup cannot be opened: wrong key, or the file was altered."""


@dataclass(frozen=True)
class BackupKey:
    """Where the key comes from: a passphrase, or the bytes of a key file."""

    passphrase: str | None = None
    key_file_bytes: bytes | None = None

    @classmethod
    def from_options(cls, passphrase: str | None, key_file: Path | None) -> BackupKey:
        if bool(passphrase) == bool(key_file):
            raise BackupKeyError("give exactly one of a passphrase or a key file")
        if key_file is not None:
            data = key_file.read_bytes()
            if len(data) < 32:
                raise BackupKeyError(f"key file {key_file} holds fewer than 32 bytes")
            return cls(key_file_bytes=data)
        if passphrase is not None and len(passphrase) < 12:
            raise BackupKeyError("the backup passphrase must be at least 12 characters")
        return cls(passphrase=passphrase)

    def derive(self, header: dict[str, object]) -> bytes:
        salt = bytes.fromhex(str(header["salt"]))
        if header["kdf"] == "scrypt":
            if self.passphrase is None:
                raise BackupKeyError("this backup was made with a passphrase, not a key file")
            n, r, p = int(header["n"]), int(header["r"]), int(header["p"])  # type: ignore[call-overload]
            return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(self.passphrase.encode())
        if header["kdf"] == "hkdf-keyfile":
            if self.key_file_bytes is None:
                raise BackupKeyError("this backup was made with a key file, not a passphrase")
            return HKDF(hashes.SHA256(), 32, salt, b"hikeshi-backup").derive(self.key_file_bytes)
        raise BackupKeyError(f"unknown key derivation {header['kdf']!r}")


def encrypt_archive(plaintext: bytes, key: BackupKey) -> bytes:
    salt = os.urandom(16)
    header: dict[str, object]
    if key.passphrase is not None:
        header = {"kdf": "scrypt", "salt": salt.hex(), "n": SCRYPT_N, "r": 8, "p": 1}
    else:
        header = {"kdf": "hkdf-keyfile", "salt": salt.hex()}
    nonce = os.urandom(12)
    header["nonce"] = nonce.hex()
    header_bytes = json.dumps(header, sort_keys=True).encode() + b"\n"
    ciphertext = AESGCM(key.derive(header)).encrypt(nonce, plaintext, MAGIC + header_bytes)
    return MAGIC + header_bytes + ciphertext


def decrypt_archive(data: bytes, key: BackupKey) -> bytes:
    if not data.startswith(MAGIC):
        raise BackupKeyError("not a Hikeshi backup file (or its first bytes were altered)")
    rest = data[len(MAGIC) :]
    line_end = rest.find(b"\n")
    if line_end < 0:
        raise BackupKeyError("backup header is damaged")
    header_bytes = rest[: line_end + 1]
    try:
        header = json.loads(header_bytes)
        nonce = bytes.fromhex(header["nonce"])
    except (ValueError, KeyError) as exc:
        raise BackupKeyError("backup header is damaged") from exc
    try:
        return AESGCM(key.derive(header)).decrypt(nonce, rest[line_end + 1 :], MAGIC + header_bytes)
    except BackupKeyError:
        raise
    except Exception as exc:
        raise BackupKeyError(
            "the backup cannot be decrypted: the key or passphrase is wrong, or the file was altered"
        ) from exc
