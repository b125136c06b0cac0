"""Whether a new screen-lock password satisfies an Android password policy (AMAPI
`passwordPolicies`), checked before a RESET_PASSWORD is queued.

resetPasswordWithToken refuses a password that breaks the policy; a refusal on the tablet would
leave the operator guessing, so the server says which rule fails first. The rules follow
Android's PasswordMetrics: a password's quality is NUMERIC (digits), NUMERIC_COMPLEX (digits
without a repeated or ordered run longer than 3), ALPHABETIC (anything with a non-digit) or
ALPHANUMERIC (letters and digits); COMPLEX counts letters, digits and symbols. The history rule
(passwordHistoryLength) cannot be checked here: the server never knows old passwords.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

# Android refuses longer lock-screen passwords (LockPatternUtils / PasswordMetrics).
MAX_PASSWORD_LENGTH = 16
_ORDER = ("NUMERIC", "NUMERIC_COMPLEX", "ALPHABETIC", "ALPHANUMERIC")
_NEEDS_A_PASSWORD = {
    "SOMETHING",
    "BIOMETRIC_WEAK",
    "NUMERIC",
    "NUMERIC_COMPLEX",
    "ALPHABETIC",
    "ALPHANUMERIC",
    "COMPLEX",
}


def _longest_run(password: str) -> int:
    """The longest run of one repeated character or of characters in steady order (1234, 9753)."""
    best = run = 1
    step: int | None = None
    for previous, current in itertools.pairwise(password):
        delta = ord(current) - ord(previous)
        if step is not None and delta == step:
            run += 1
        else:
            run = 2
            step = delta
        best = max(best, run)
    return best if password else 0


def _quality(password: str) -> str:
    if password.isdigit():
        return "NUMERIC_COMPLEX" if _longest_run(password) <= 3 else "NUMERIC"
    has_letter = any(ch.isalpha() for ch in password)
    has_digit = any(ch.isdigit() for ch in password)
    return "ALPHANUMERIC" if has_letter and has_digit else "ALPHABETIC"


def password_problem(password: str, policies: Iterable[Mapping[str, Any]]) -> str | None:
    """The first rule `password` breaks (in English, without the password), or None."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"at most {MAX_PASSWORD_LENGTH} characters (Android's limit)"
    if any(not (32 <= ord(ch) < 127) for ch in password):
        return "printable ASCII characters only (the Android lock screen accepts no others)"
    for policy in policies:
        quality = str(policy.get("passwordQuality") or "PASSWORD_QUALITY_UNSPECIFIED")
        minimum = int(policy.get("passwordMinimumLength") or 0)
        if not password:
            if quality in _NEEDS_A_PASSWORD or minimum > 0:
                return "the unit's password policy requires a password; an empty one would be refused"
            continue
        if len(password) < minimum:
            return f"at least {minimum} characters (the unit's password policy)"
        if quality in _ORDER and _ORDER.index(_quality(password)) < _ORDER.index(quality):
            return f"the unit's password policy requires quality {quality}"
        if quality == "COMPLEX":
            problem = _complex_problem(password, policy)
            if problem:
                return problem
    return None


def _complex_problem(password: str, policy: Mapping[str, Any]) -> str | None:
    counts = {
        "passwordMinimumLetters": sum(ch.isalpha() for ch in password),
        "passwordMinimumNumeric": sum(ch.isdigit() for ch in password),
        "passwordMinimumSymbols": sum(not ch.isalnum() for ch in password),
        "passwordMinimumUpperCase": sum(ch.isupper() for ch in password),
        "passwordMinimumLowerCase": sum(ch.islower() for ch in password),
        "passwordMinimumNonLetter": sum(not ch.isalpha() for ch in password),
    }
    for name, count in counts.items():
        needed = int(policy.get(name) or 0)
        if count < needed:
            return f"{name}: at least {needed} (the unit's password policy)"
    return None
