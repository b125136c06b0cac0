"""Server-side console sessions: the cookie holds a random token; the row decides.

Because every request looks the row (and its user) up, disabling a user, logging out or an idle
timeout ends the session at once, on every worker.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.config import Settings
from mdm.ground.models.user import User, WebSession

# Writing last_active_at on every request would turn each page view into a write; once a
# minute is precise enough for a 30-minute idle timeout.
TOUCH_INTERVAL = timedelta(seconds=60)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def cookie_name(settings: Settings) -> str:
    # The __Host- prefix makes the browser refuse the cookie unless Secure, Path=/, no Domain.
    return "__Host-hikeshi_session" if secure_cookies(settings) else "hikeshi_session"


def secure_cookies(settings: Settings) -> bool:
    return settings.public_url.lower().startswith("https://")


def start_session(
    session: Session, user: User, *, source_ip: str | None, user_agent: str | None
) -> tuple[WebSession, str]:
    token = secrets.token_urlsafe(32)
    now = clock.now()
    row = WebSession(
        token_hash=token_hash(token),
        user_id=user.id,
        created_at=now,
        last_active_at=now,
        source_ip=source_ip,
        user_agent=(user_agent or "")[:255] or None,
    )
    session.add(row)
    session.flush()
    return row, token


@dataclass(frozen=True)
class SessionCheck:
    web_session: WebSession | None
    # Why there is no usable session: "missing", "revoked", "idle", "expired", "disabled".
    problem: str | None = None


def load_session(session: Session, token: str | None, settings: Settings) -> SessionCheck:
    """The live session for this cookie; ends it (revoked_at) when it has timed out."""
    if not token:
        return SessionCheck(None, "missing")
    row = session.scalars(select(WebSession).where(WebSession.token_hash == token_hash(token))).first()
    if row is None:
        return SessionCheck(None, "missing")
    if row.revoked_at is not None:
        # Say why a session the browser still holds has ended, so the login page can tell the user.
        reason = {"idle": "idle", "expired": "expired", "user_disabled": "disabled"}.get(
            row.revoked_reason or ""
        )
        return SessionCheck(None, reason or "revoked")
    now = clock.now()
    problem = None
    if not row.user.active:
        problem = "disabled"
    elif now - row.last_active_at > timedelta(minutes=settings.session_idle_minutes):
        problem = "idle"
    elif now - row.created_at > timedelta(hours=settings.session_max_hours):
        problem = "expired"
    if problem is not None:
        revoke(row, "user_disabled" if problem == "disabled" else problem)
        return SessionCheck(None, problem)
    return SessionCheck(row)


def touch(row: WebSession) -> None:
    now = clock.now()
    if now - row.last_active_at >= TOUCH_INTERVAL:
        row.last_active_at = now


def rotate(row: WebSession) -> str:
    """A new cookie value for the same session (after the second factor: no session fixation)."""
    token = secrets.token_urlsafe(32)
    row.token_hash = token_hash(token)
    return token


def revoke(row: WebSession, reason: str) -> None:
    if row.revoked_at is None:
        row.revoked_at = clock.now()
        row.revoked_reason = reason[:32]


def revoke_user_sessions(session: Session, user_id: int, reason: str, *, keep_id: int | None = None) -> int:
    """End every live session of the user (except `keep_id`, the one making the change)."""
    stmt = update(WebSession).where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))
    if keep_id is not None:
        stmt = stmt.where(WebSession.id != keep_id)
    # Session.execute is typed as returning a Result; for an UPDATE or DELETE it is a CursorResult.
    result = cast(
        CursorResult[Any],
        session.execute(
            stmt.values(revoked_at=clock.now(), revoked_reason=reason[:32]).execution_options(
                synchronize_session="fetch"
            )
        ),
    )
    return result.rowcount or 0
