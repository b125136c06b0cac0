"""Enrollment tokens and the single-use SCEP challenges issued with them.

A token is a high-entropy secret in a QR code, bound to an org unit and a platform, with an expiry
and a maximum number of uses; only its SHA-256 is stored, so the secret (and the QR code) can be
shown once, when the token is created. Serving the enrollment profile issues a fresh challenge
(also stored hashed). A *use* is counted when a device identity is issued through the token over
SCEP: that is the scarce thing, and counting it there with a guarded UPDATE makes a one-use token
issue exactly one identity however many devices race for it. The use row records the device when
it authenticates with that identity (enrollment.hooks).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.config import Settings
from mdm.ground.models import (
    ChallengePurpose,
    Device,
    DeviceCertificate,
    EnrollmentChallenge,
    EnrollmentToken,
    EnrollmentTokenUse,
    OrgUnit,
    TokenPlatform,
)

MAX_USES_LIMIT = 10_000
MAX_LIFETIME = timedelta(days=366)
ENROLL_PATH = "/enroll/"


class TokenState:
    ACTIVE = "active"
    EXPIRED = "expired"
    USED_UP = "used_up"
    REVOKED = "revoked"


class TokenError(ValueError):
    """Refused token input; `fields` maps each offending field to its messages."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        super().__init__("invalid enrollment token: " + ", ".join(sorted(fields)))
        self.fields = dict(fields)


class TokenUnavailable(LookupError):
    """The token cannot enroll a device now; `state` says why (unknown, expired, used_up, revoked)."""

    def __init__(self, state: str, token: EnrollmentToken | None = None) -> None:
        super().__init__(f"enrollment token is {state}")
        self.state = state
        self.token = token


class ChallengeRejected(PermissionError):
    """A SCEP challenge that is unknown, used, expired, or whose token can no longer enroll."""


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_duration(text: str) -> timedelta:
    """'7d', '12h', '90m', '2w' → timedelta (for CLI options and forms)."""
    match = re.fullmatch(r"\s*(\d{1,5})\s*([mhdw])\s*", text or "")
    if not match:
        raise TokenError({"expires": ["use a number with m, h, d or w, e.g. 7d"]})
    amount, unit = int(match.group(1)), match.group(2)
    minutes = {"m": 1, "h": 60, "d": 24 * 60, "w": 7 * 24 * 60}[unit]
    return timedelta(minutes=amount * minutes)


class CreateTokenSchema(Schema):
    org_unit_id = fields.Integer(required=True, strict=True)
    platform = fields.String(load_default=TokenPlatform.APPLE, validate=validate.OneOf(TokenPlatform.ALL))
    max_uses = fields.Integer(load_default=1, strict=True, validate=validate.Range(min=1, max=MAX_USES_LIMIT))
    expires_at = fields.AwareDateTime(required=True)
    note = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=255))


@dataclass(frozen=True)
class CreatedToken:
    """The new row and its secret; the secret is never stored and cannot be shown again."""

    token: EnrollmentToken
    secret: str

    def url(self, settings: Settings) -> str:
        return enrollment_url(settings, self.secret)


def enrollment_url(settings: Settings, secret: str) -> str:
    return settings.public_url.rstrip("/") + ENROLL_PATH + secret


def create_token(session: Session, data: Mapping[str, Any], *, actor: Actor) -> CreatedToken:
    """Create a token from outside data: org_unit_id, platform, max_uses, expires_at, note.

    `expires_at` may also be given as `expires_in` (a timedelta) by trusted callers such as the CLI.
    """
    raw = dict(data)
    expires_in = raw.pop("expires_in", None)
    if isinstance(expires_in, timedelta):
        raw["expires_at"] = (clock.now() + expires_in).isoformat()
    elif isinstance(raw.get("expires_at"), datetime):
        raw["expires_at"] = raw["expires_at"].isoformat()
    try:
        clean = CreateTokenSchema().load(raw)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise TokenError(messages) from exc
    now = clock.now()
    if clean["expires_at"] <= now:
        raise TokenError({"expires_at": ["must be in the future"]})
    if clean["expires_at"] - now > MAX_LIFETIME:
        raise TokenError({"expires_at": ["must be within a year"]})
    unit = session.get(OrgUnit, clean["org_unit_id"])
    if unit is None:
        raise TokenError({"org_unit_id": [f"no org unit with id {clean['org_unit_id']}"]})
    secret = secrets.token_urlsafe(24)
    token = EnrollmentToken(
        token_hash=hash_secret(secret),
        org_unit_id=unit.id,
        platform=clean["platform"],
        max_uses=clean["max_uses"],
        use_count=0,
        note=clean["note"],
        expires_at=clean["expires_at"],
        created_at=now,
        created_by=actor.name,
    )
    session.add(token)
    session.flush()
    record_event(
        session,
        actor,
        "enrollment_token.created",
        "enrollment_token",
        token.id,
        {
            "org_unit_id": unit.id,
            "platform": token.platform,
            "max_uses": token.max_uses,
            "expires_at": token.expires_at.isoformat(),
            "note": token.note,
        },
    )
    return CreatedToken(token, secret)


def token_state(token: EnrollmentToken, at: datetime | None = None) -> str:
    at = at or clock.now()
    if token.revoked_at is not None:
        return TokenState.REVOKED
    if token.expires_at <= at:
        return TokenState.EXPIRED
    if token.use_count >= token.max_uses:
        return TokenState.USED_UP
    return TokenState.ACTIVE


def list_tokens(
    session: Session, *, org_unit_ids: set[int] | None = None, include_inactive: bool = True
) -> list[EnrollmentToken]:
    """Tokens newest first, optionally only those of some units (e.g. orgunits.subtree_ids)."""
    stmt = select(EnrollmentToken).order_by(EnrollmentToken.id.desc())
    if org_unit_ids is not None:
        stmt = stmt.where(EnrollmentToken.org_unit_id.in_(org_unit_ids))
    tokens = list(session.scalars(stmt))
    if not include_inactive:
        now = clock.now()
        tokens = [t for t in tokens if token_state(t, now) == TokenState.ACTIVE]
    return tokens


def get_token(session: Session, token_id: int) -> EnrollmentToken | None:
    return session.get(EnrollmentToken, token_id)


def find_token(session: Session, secret: str) -> EnrollmentToken | None:
    if not secret or len(secret) > 128:
        return None
    return session.scalars(
        select(EnrollmentToken).where(EnrollmentToken.token_hash == hash_secret(secret))
    ).first()


def usable_token(session: Session, secret: str, *, platform: str | None = None) -> EnrollmentToken:
    """The token behind a secret if it can enroll a device now, else TokenUnavailable."""
    token = find_token(session, secret)
    if token is None:
        raise TokenUnavailable("unknown")
    state = token_state(token)
    if state != TokenState.ACTIVE:
        raise TokenUnavailable(state, token)
    if platform is not None and token.platform != platform:
        raise TokenUnavailable("wrong_platform", token)
    return token


def revoke_token(
    session: Session, token: EnrollmentToken, *, actor: Actor, reason: str | None = None
) -> EnrollmentToken:
    """Revoke at once; pending challenges of the token stop working too. Idempotent."""
    if token.revoked_at is not None:
        return token
    token.revoked_at = clock.now()
    token.revoked_by = actor.name
    token.revoke_reason = (reason or "").strip()[:255] or None
    session.flush()
    record_event(
        session,
        actor,
        "enrollment_token.revoked",
        "enrollment_token",
        token.id,
        {"reason": token.revoke_reason, "use_count": token.use_count, "max_uses": token.max_uses},
    )
    return token


def token_uses(session: Session, token: EnrollmentToken) -> list[EnrollmentTokenUse]:
    return list(
        session.scalars(
            select(EnrollmentTokenUse)
            .where(EnrollmentTokenUse.token_id == token.id)
            .order_by(EnrollmentTokenUse.id)
        )
    )


# -- challenges ----------------------------------------------------------------------------------


def issue_enrollment_challenge(
    session: Session, settings: Settings, token: EnrollmentToken, *, actor: Actor
) -> str:
    """A fresh single-use challenge for the profile being served through `token`."""
    secret = secrets.token_urlsafe(32)
    now = clock.now()
    challenge = EnrollmentChallenge(
        challenge_hash=hash_secret(secret),
        purpose=ChallengePurpose.ENROLL,
        token_id=token.id,
        created_at=now,
        expires_at=min(now + timedelta(minutes=settings.scep_challenge_minutes), token.expires_at),
        source_ip=actor.source_ip,
    )
    session.add(challenge)
    session.flush()
    record_event(
        session,
        actor,
        "enrollment.profile_served",
        "enrollment_token",
        token.id,
        {"challenge_id": challenge.id, "expires_at": challenge.expires_at.isoformat()},
    )
    return secret


def issue_renewal_challenge(
    session: Session, device: Device, *, expires_at: datetime, source_ip: str | None = None
) -> tuple[EnrollmentChallenge, str]:
    """A single-use challenge that can only renew the identity of `device`."""
    secret = secrets.token_urlsafe(32)
    challenge = EnrollmentChallenge(
        challenge_hash=hash_secret(secret),
        purpose=ChallengePurpose.RENEW,
        device_id=device.id,
        created_at=clock.now(),
        expires_at=expires_at,
        source_ip=source_ip,
    )
    session.add(challenge)
    session.flush()
    return challenge, secret


def take_token_use(session: Session, token_id: int | None) -> bool:
    """Count one use of a token that is still usable, in one statement: two devices racing for
    the last use cannot both have it. False when the token is revoked, expired or used up."""
    now = clock.now()
    # Session.execute is typed as returning a Result; for an UPDATE or DELETE it is a CursorResult.
    taken = cast(
        CursorResult[Any],
        session.execute(
            update(EnrollmentToken)
            .where(
                EnrollmentToken.id == token_id,
                EnrollmentToken.revoked_at.is_(None),
                EnrollmentToken.expires_at > now,
                EnrollmentToken.use_count < EnrollmentToken.max_uses,
            )
            .values(use_count=EnrollmentToken.use_count + 1)
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    return taken == 1


def redeem_challenge(session: Session, secret: str) -> EnrollmentChallenge:
    """Mark a challenge used, once; raises ChallengeRejected (nothing written) if it cannot be.

    An enrollment challenge also takes one use of its token here, atomically: the UPDATE only
    matches while the token is unrevoked, unexpired and below its maximum.
    """
    if not secret or len(secret) > 255:
        raise ChallengeRejected("no challenge password")
    now = clock.now()
    challenge = session.scalars(
        select(EnrollmentChallenge).where(EnrollmentChallenge.challenge_hash == hash_secret(secret))
    ).first()
    if challenge is None:
        raise ChallengeRejected("unknown challenge password")
    if challenge.used_at is not None:
        raise ChallengeRejected("challenge password was already used")
    if challenge.expires_at <= now:
        raise ChallengeRejected("challenge password has expired")
    if challenge.purpose == ChallengePurpose.ENROLL and not take_token_use(session, challenge.token_id):
        raise ChallengeRejected("the enrollment token is revoked, expired or used up")
    marked = cast(
        CursorResult[Any],
        session.execute(
            update(EnrollmentChallenge)
            .where(EnrollmentChallenge.id == challenge.id, EnrollmentChallenge.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    if marked != 1:
        # Another request redeemed it between our read and this write; its transaction counts.
        raise ChallengeRejected("challenge password was already used")
    session.refresh(challenge)
    if challenge.token_id is not None:
        token = session.get(EnrollmentToken, challenge.token_id)
        if token is not None:
            session.refresh(token)
    return challenge


def record_token_use(
    session: Session,
    challenge: EnrollmentChallenge,
    certificate_row: DeviceCertificate,
    *,
    actor: Actor,
) -> EnrollmentTokenUse:
    """Record that an identity was issued through the challenge's token (the use was counted)."""
    if challenge.token_id is None:
        raise ValueError("only enrollment challenges belong to a token")
    use = EnrollmentTokenUse(
        token_id=challenge.token_id,
        challenge_id=challenge.id,
        device_certificate_id=certificate_row.id,
        used_at=clock.now(),
        source_ip=actor.source_ip,
    )
    session.add(use)
    session.flush()
    token = session.get(EnrollmentToken, challenge.token_id)
    record_event(
        session,
        actor,
        "enrollment_token.used",
        "enrollment_token",
        challenge.token_id,
        {
            "certificate": certificate_row.fingerprint_sha256,
            "use_count": token.use_count if token else None,
            "max_uses": token.max_uses if token else None,
        },
    )
    return use


def purge_stale_challenges(session: Session, *, older_than: timedelta = timedelta(days=30)) -> int:
    """Delete challenges that expired unused more than `older_than` ago (for a scheduler job).

    Used challenges stay: token uses point at them.
    """
    cutoff = clock.now() - older_than
    result = cast(
        CursorResult[Any],
        session.execute(
            delete(EnrollmentChallenge)
            .where(EnrollmentChallenge.used_at.is_(None), EnrollmentChallenge.expires_at < cutoff)
            .execution_options(synchronize_session=False)
        ),
    )
    return result.rowcount or 0
