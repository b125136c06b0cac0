"""Password hashing (argon2id) and the password policy."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from web.i18n import N_

MIN_LENGTH = 12
MAX_LENGTH = 256
# argon2-cffi's defaults are RFC 9106's low-memory profile of argon2id.
_hasher = PasswordHasher()
# Checked against when the user does not exist, so both cases take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

# Alphabet of generated one-time passwords: no look-alikes (0/O, 1/l/I) to misread on a call.
_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class PasswordPolicyError(ValueError):
    """The password does not meet the policy; the message says which rule."""


TOO_SHORT = N_("must be at least 12 characters")
TOO_LONG = N_("must be at most 256 characters")
ONLY_SPACES = N_("must not be only spaces")
HAS_USERNAME = N_("must not contain the user name")
TOO_REPETITIVE = N_("must not repeat the same few characters")


def check_policy(password: str, *, username: str | None = None) -> None:
    """Raise PasswordPolicyError (its message a gettext msgid) unless the password is acceptable."""
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError(TOO_SHORT)
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError(TOO_LONG)
    if not password.strip():
        raise PasswordPolicyError(ONLY_SPACES)
    if username and username.lower() in password.lower():
        raise PasswordPolicyError(HAS_USERNAME)
    if len(set(password)) < 4:
        raise PasswordPolicyError(TOO_REPETITIVE)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when the password matches; always does the work of one argon2 verification."""
    if len(password) > MAX_LENGTH:
        # Still spend the time, so an over-long guess is not told apart by its speed.
        password_hash, password = None, password[:MAX_LENGTH]
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def generate_one_time_password() -> str:
    """A 20-character random password, grouped for reading aloud: xxxxx-xxxxx-xxxxx-xxxxx."""
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(20))
    return "-".join(raw[i : i + 5] for i in range(0, 20, 5))
