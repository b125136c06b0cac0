"""API bearer tokens: `hks_<public id>_<secret>`, shown once, stored as a SHA-256 hash.

The secret has 256 bits of entropy, so a fast hash is enough (no brute force to slow down),
and looking a token up costs one indexed query per API request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm import clock
from mdm.audit import Actor, record_event
from mdm.models.user import ApiToken
from web.rbac import TOKEN_ROLES

PREFIX = "hks"
MAX_LIFETIME = timedelta(days=730)
# last_used_at is written at most this often per token.
USE_RECORD_INTERVAL = timedelta(seconds=60)


class ApiTokenError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _hash(presented: str) -> str:
    return hashlib.sha256(presented.encode()).hexdigest()


def create_api_token(
    session: Session,
    *,
    name: str,
    role: str,
    org_unit_id: int | None,
    expires_at: datetime,
    actor: Actor,
) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the token text, which is never available again."""
    if role not in {r.value for r in TOKEN_ROLES}:
        raise ApiTokenError("role", f"unknown role {role!r}")
    now = clock.now()
    if expires_at <= now:
        raise ApiTokenError("expires_at", "must be in the future")
    if expires_at - now > MAX_LIFETIME:
        raise ApiTokenError("expires_at", f"must be within {MAX_LIFETIME.days} days")
    public_id = secrets.token_hex(5)
    plaintext = f"{PREFIX}_{public_id}_{secrets.token_urlsafe(32)}"
    token = ApiToken(
        public_id=public_id,
        token_hash=_hash(plaintext),
        name=name,
        role=role,
        org_unit_id=org_unit_id,
        created_by=actor.name,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(token)
    session.flush()
    record_event(
        session,
        actor,
        "api_token.created",
        "api_token",
        public_id,
        {"name": name, "role": role, "org_unit_id": org_unit_id, "expires_at": expires_at.isoformat()},
    )
    return token, plaintext


@dataclass(frozen=True)
class TokenCheck:
    token: ApiToken | None
    problem: str | None = None  # "malformed", "unknown", "revoked", "expired"


def authenticate_api_token(session: Session, presented: str) -> TokenCheck:
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or len(presented) > 200:
        return TokenCheck(None, "malformed")
    token = session.scalars(select(ApiToken).where(ApiToken.public_id == parts[1])).first()
    if token is None or not hmac.compare_digest(token.token_hash, _hash(presented)):
        return TokenCheck(None, "unknown")
    if token.revoked_at is not None:
        return TokenCheck(None, "revoked")
    if token.expires_at <= clock.now():
        return TokenCheck(None, "expired")
    return TokenCheck(token)


def record_use(token: ApiToken, source_ip: str | None) -> bool:
    """Note when and from where the token was last used; True when the row changed."""
    now = clock.now()
    if (
        token.last_used_at is not None
        and now - token.last_used_at < USE_RECORD_INTERVAL
        and token.last_used_ip == source_ip
    ):
        return False
    token.last_used_at = now
    token.last_used_ip = source_ip
    return True


def find_api_token(session: Session, public_id: str) -> ApiToken | None:
    return session.scalars(select(ApiToken).where(ApiToken.public_id == public_id)).first()


def revoke_api_token(session: Session, token: ApiToken, *, actor: Actor) -> ApiToken:
    if token.revoked_at is not None:
        return token
    token.revoked_at = clock.now()
    token.revoked_by = actor.name
    record_event(session, actor, "api_token.revoked", "api_token", token.public_id, {"name": token.name})
    return token
