"""API bearer tokens: `hks_<public id>_<secret>`, shown once, stored as a SHA-256 hash.

The secret has 256 bits of entropy, so a fast hash is enough (no brute force to slow down),
and looking a token up costs one indexed query per API request.

Every token answers for a person (its owner, who created it) or for a named service account (the
dispatch systems). A person's token works only while that person exists and is enabled, and never
with more permissions than the person's own role; a service account is nobody in the two-person
wipe rule.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models.user import ApiToken, User
from web.rbac import TOKEN_ROLES, permissions_of

PREFIX = "hks"
MAX_LIFETIME = timedelta(days=730)
# last_used_at is written at most this often per token.
USE_RECORD_INTERVAL = timedelta(seconds=60)
SERVICE_ACCOUNT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


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
    owner: User | None = None,
    service_account: str | None = None,
) -> tuple[ApiToken, str]:
    """Create a token for `owner` (a person) or for `service_account` (exactly one of them);
    returns the row and the token text, which is never available again."""
    if role not in {r.value for r in TOKEN_ROLES}:
        raise ApiTokenError("role", f"unknown role {role!r}")
    if (owner is None) == (service_account is None):
        raise ApiTokenError("owner", "a token belongs to exactly one person or one service account")
    if owner is not None:
        if owner.disabled:
            raise ApiTokenError("owner", f"user {owner.username} is disabled")
        if not permissions_of(role) <= permissions_of(owner.role):
            raise ApiTokenError("role", f"a {owner.role} cannot own a token with the role {role}")
    if service_account is not None and not SERVICE_ACCOUNT_NAME.match(service_account):
        raise ApiTokenError(
            "service_account", "2 to 64 characters: lower-case letters, digits, '.', '_' or '-'"
        )
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
        owner_user_id=owner.id if owner is not None else None,
        service_account=service_account,
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
        {
            "name": name,
            "role": role,
            "org_unit_id": org_unit_id,
            "expires_at": expires_at.isoformat(),
            "owner_user_id": token.owner_user_id,
            "owner": owner.username if owner is not None else None,
            "service_account": service_account,
        },
    )
    return token, plaintext


@dataclass(frozen=True)
class TokenCheck:
    token: ApiToken | None
    # "malformed", "unknown", "revoked", "expired", "owner_disabled", "owner_removed"
    problem: str | None = None
    owner: User | None = None


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
    if token.service_account is not None and token.owner_user_id is None:
        return TokenCheck(token)
    # Checked on every request: disabling or removing the person stops their tokens at once.
    owner = session.get(User, token.owner_user_id) if token.owner_user_id is not None else None
    if owner is None:
        return TokenCheck(None, "owner_removed")
    if owner.disabled:
        return TokenCheck(None, "owner_disabled")
    return TokenCheck(token, owner=owner)


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
