"""The console login: password, then second factor. Every attempt is an audit event.

Failures are counted per user name typed (web.auth.lockout) and answered the same way whether
the user exists, is disabled or typed a wrong password, so the form never confirms a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from mdm import clock
from mdm.audit import Actor, record_event
from mdm.config import Settings
from mdm.models.user import User, WebSession
from web.auth import lockout, passwords, recovery, totp
from web.auth.sessions import rotate, start_session
from web.rbac import USER_ROLES
from web.users import find_user_by_name


@dataclass(frozen=True)
class LoginResult:
    user: User | None = None
    web_session: WebSession | None = None
    token: str | None = None
    locked_until: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.user is not None


def _actor(username: str, user: User | None, source_ip: str | None) -> Actor:
    return Actor(f"user:{username[:64]}", user.role if user else "unknown", source_ip)


def password_login(
    session: Session, username: str, password: str, *, source_ip: str | None, user_agent: str | None
) -> LoginResult:
    """Check the password; on success start a session (second factor still to come, if any)."""
    username = username.strip().lower()
    locked = lockout.locked_until(session, username)
    user = find_user_by_name(session, username)
    actor = _actor(username, user, source_ip)
    if locked is not None:
        record_event(
            session,
            actor,
            "auth.login_failed",
            "user",
            user.id if user else None,
            {"reason": "locked", "locked_until": locked.isoformat()},
        )
        return LoginResult(locked_until=locked)
    password_ok = passwords.verify_password(user.password_hash if user else None, password)
    reason = None
    if user is None:
        reason = "unknown_user"
    elif not password_ok:
        reason = "bad_password"
    elif not user.active:
        reason = "disabled"
    elif user.role not in {r.value for r in USER_ROLES}:
        reason = "role_not_allowed"
    if reason is not None:
        locked = lockout.register_failure(session, username)
        record_event(
            session,
            actor,
            "auth.login_failed",
            "user",
            user.id if user else None,
            {"reason": reason, "locked_until": locked.isoformat() if locked else None},
        )
        return LoginResult(locked_until=locked)
    assert user is not None
    lockout.reset(session, username)
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    web_session, token = start_session(session, user, source_ip=source_ip, user_agent=user_agent)
    if user.totp_enabled:
        record_event(session, actor, "auth.password_accepted", "user", user.id, {"session": web_session.id})
    else:
        user.last_login_at = clock.now()
        record_event(
            session, actor, "auth.login", "user", user.id, {"session": web_session.id, "second_factor": None}
        )
    return LoginResult(user=user, web_session=web_session, token=token)


def second_factor(
    session: Session,
    web_session: WebSession,
    settings: Settings,
    *,
    code: str | None,
    recovery_code: str | None,
    source_ip: str | None,
) -> LoginResult:
    """Check a TOTP code or a recovery code; on success the session is fully logged in (and its
    cookie value rotated). Failures count towards the same lockout as passwords."""
    user = web_session.user
    actor = _actor(user.username, user, source_ip)
    locked = lockout.locked_until(session, user.username)
    if locked is not None:
        record_event(
            session,
            actor,
            "auth.login_failed",
            "user",
            user.id,
            {"reason": "locked", "step": "second_factor", "locked_until": locked.isoformat()},
        )
        return LoginResult(locked_until=locked)
    method = None
    if code and user.totp_secret_encrypted is not None:
        seed = totp.unseal_seed(settings.secret_key, user.totp_secret_encrypted)
        step = totp.accepted_step(seed, code, user.totp_last_step)
        if step is not None:
            user.totp_last_step = step
            method = "totp"
    elif recovery_code:
        wanted = recovery.code_hash(settings.secret_key, recovery_code)
        for row in user.recovery_codes:
            if row.used_at is None and row.code_hash == wanted:
                row.used_at = clock.now()
                method = "recovery_code"
                break
    if method is None:
        locked = lockout.register_failure(session, user.username)
        record_event(
            session,
            actor,
            "auth.login_failed",
            "user",
            user.id,
            {
                "reason": "bad_recovery_code" if recovery_code and not code else "bad_totp",
                "step": "second_factor",
                "locked_until": locked.isoformat() if locked else None,
            },
        )
        return LoginResult(locked_until=locked)
    lockout.reset(session, user.username)
    web_session.mfa_verified_at = clock.now()
    token = rotate(web_session)
    user.last_login_at = clock.now()
    details: dict[str, object] = {"session": web_session.id, "second_factor": method}
    if method == "recovery_code":
        details["recovery_codes_left"] = sum(1 for c in user.recovery_codes if c.used_at is None)
    record_event(session, actor, "auth.login", "user", user.id, details)
    return LoginResult(user=user, web_session=web_session, token=token)


def logout(session: Session, web_session: WebSession, *, source_ip: str | None) -> None:
    from web.auth.sessions import revoke

    user = web_session.user
    revoke(web_session, "logout")
    record_event(
        session,
        _actor(user.username, user, source_ip),
        "auth.logout",
        "user",
        user.id,
        {"session": web_session.id},
    )
