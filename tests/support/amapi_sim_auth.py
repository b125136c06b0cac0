"""Google's OAuth2 service-account flow as the AMAPI simulator checks it (RFC 7523 JWT bearer).

The client signs a JWT (RS256) with the service account's private key and posts it to the
token_uri; the simulator verifies it here with the public half, independently of google-auth:
header alg RS256 (and kid = private_key_id when present), signature, `iss` == client_email,
`aud` == token_uri or Google's token endpoint https://oauth2.googleapis.com/token (google-auth
always writes the latter, whatever the token_uri; Google accepts both), a `scope` claim,
`iat`/`exp` present with exp in the future and at most one hour after iat. `TokenRefused`
carries the OAuth error (`invalid_grant`, ...) Google answers with.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
AMAPI_SCOPE = "https://www.googleapis.com/auth/androidmanagement"
PUBSUB_SCOPE = "https://www.googleapis.com/auth/pubsub"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
CLOCK_SKEW_SECONDS = 60
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


class TokenRefused(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True)
class ServiceAccountKey:
    key_id: str
    private_pem: str
    public_key: rsa.RSAPublicKey


@cache
def service_account_key() -> ServiceAccountKey:
    """One RSA 2048 key per test session, as Google issues for a service account."""
    return _new_key(2048, "5f3c0a1e9b7d4c2a8e6f1b3d5a7c9e0f2b4d6a8c")


@cache
def stranger_key() -> ServiceAccountKey:
    """A key Google never issued (small: it is not the subject of any test)."""
    return _new_key(1024, "0000000000000000000000000000000000000000")


def _new_key(bits: int, key_id: str) -> ServiceAccountKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return ServiceAccountKey(key_id=key_id, private_pem=pem, public_key=key.public_key())


@cache
def _private(private_pem: str) -> rsa.RSAPrivateKey:
    private = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    return private


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_assertion(key: ServiceAccountKey, claims: dict[str, Any], *, kid: str | None = None) -> str:
    """A JWT signed like google-auth signs one (for tests that build a wrong assertion)."""
    private = _private(key.private_pem)
    header = {"alg": "RS256", "typ": "JWT", "kid": kid or key.key_id}
    signing_input = (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())).encode()
    signature = private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return signing_input.decode() + "." + b64url(signature)


def verify_assertion(
    assertion: str, key: ServiceAccountKey, *, client_email: str, token_uri: str, now: float | None = None
) -> dict[str, Any]:
    """The claims of a valid assertion; TokenRefused otherwise."""
    now = time.time() if now is None else now
    parts = assertion.split(".")
    if len(parts) != 3:
        raise TokenRefused("invalid_request", "Invalid JWT: not three dot-separated parts.")
    try:
        header = json.loads(_unb64url(parts[0]))
        claims = json.loads(_unb64url(parts[1]))
        signature = _unb64url(parts[2])
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenRefused("invalid_request", "Invalid JWT: not base64url JSON.") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenRefused("invalid_request", "Invalid JWT: header and claims must be objects.")
    if header.get("alg") != "RS256":
        raise TokenRefused("invalid_grant", "Invalid JWT: alg must be RS256.")
    if "kid" in header and header["kid"] != key.key_id:
        raise TokenRefused("invalid_grant", "Invalid JWT Signature.")
    try:
        key.public_key.verify(
            signature, (parts[0] + "." + parts[1]).encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature as exc:
        raise TokenRefused("invalid_grant", "Invalid JWT Signature.") from exc
    if claims.get("iss") != client_email:
        raise TokenRefused("invalid_grant", "Invalid JWT: iss is not the service account.")
    if claims.get("aud") not in (token_uri, GOOGLE_TOKEN_AUDIENCE):
        raise TokenRefused("invalid_grant", "Invalid JWT: Failed audience check.")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int | float) or not isinstance(exp, int | float):
        raise TokenRefused("invalid_grant", "Invalid JWT: iat and exp are required.")
    if exp < now - CLOCK_SKEW_SECONDS or iat > now + CLOCK_SKEW_SECONDS or exp - iat > 3600:
        raise TokenRefused(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
            "Check your iat and exp values in the JWT claim.",
        )
    if not isinstance(claims.get("scope"), str) or not claims["scope"].split():
        raise TokenRefused("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
    return claims
