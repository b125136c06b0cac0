"""TOTP second factor (RFC 6238): seeds sealed at rest, replay-proof verification, QR enrollment."""

from __future__ import annotations

import hmac

import pyotp

from mdm.ground import clock
from mdm.ground.secretbox import seal, unseal

ISSUER = "Hikeshi MDM"
SEED_PURPOSE = "totp-seed"
# One step either side absorbs a phone clock that is up to 30 s off.
VALID_WINDOW = 1


def new_seed() -> str:
    return pyotp.random_base32()


def seal_seed(secret_key: str, seed: str) -> bytes:
    return seal(secret_key, SEED_PURPOSE, seed.encode("ascii"))


def unseal_seed(secret_key: str, sealed: bytes) -> str:
    return unseal(secret_key, SEED_PURPOSE, sealed).decode("ascii")


def provisioning_uri(seed: str, username: str) -> str:
    return pyotp.TOTP(seed).provisioning_uri(name=username, issuer_name=ISSUER)


def normalize_code(code: str) -> str:
    return "".join(ch for ch in code if not ch.isspace())


def accepted_step(seed: str, code: str, last_step: int | None) -> int | None:
    """The time step the code belongs to, if it is valid now and newer than `last_step`.

    Returning the step lets the caller store it, so the same code can never be used twice.
    """
    code = normalize_code(code)
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(seed)
    now = clock.now()
    current = totp.timecode(now)
    for offset in range(-VALID_WINDOW, VALID_WINDOW + 1):
        step = current + offset
        if last_step is not None and step <= last_step:
            continue
        expected = totp.generate_otp(step)
        if hmac.compare_digest(expected, code):
            return step
    return None
