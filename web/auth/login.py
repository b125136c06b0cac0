"""The console login: password, then second factor. Every attempt is an audit event.

Attempts are counted per user name typed and per source address (web.auth.lockout) and answered
the same way whether the user exists, is disabled or typed a wrong password, so the form never
confirms a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.config import Settings
from mdm.ground.models.user import User, WebSession
from web.auth import lockout, passwords, recovery, totp
from web.auth.sessions import rotate, start_session
from web.auth.users import find_user_by_name
from web.rbac import USER_ROLES


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


@dataclass(frozen=True)
class Gate:
    """One login attempt admitted (or refused) by the throttles, committed before any check."""

    username: str
    source: lockout.Admission
    account: lockout.Admission | None


def admit_password_attempt(session: Session, username: str, *, source_ip: str | None) -> Gate:
    """Count the attempt on its source and its name (web.auth.lockout); the boundary commits this
    before the password is checked, so parallel attempts see each other's counts."""
    username = username.strip().lower()
    source = lockout.admit(session, lockout.source_key(source_ip), lockout.SOURCE_THRESHOLD)
    if source.refused:
        return Gate(username, source, None)
    return Gate(username, source, lockout.admit(session, lockout.throttle_key(username)))


def _refusal(user: User | None, password_ok: bool) -> str | None:
    if user is None:
        return "unknown_user"
    if not password_ok:
        return "bad_password"
    if not user.active:
        return "disabled"
    if user.role not in {r.value for r in USER_ROLES}:
        return "role_not_allowed"
    return None


def password_login(
    session: Session,
    gate: Gate,
    password: str,
    *,
    settings: Settings,
    code: str | None = None,
    source_ip: str | None,
    user_agent: str | None,
) -> LoginResult:
    """Check the password of an admitted attempt; on success start a session (second factor still
    to come, if any). While the name is locked, a user with TOTP signs in with the password and a
    current code together; nobody else gets past the lock, and the answer to a wrong password is
    the same as to a right one."""
    username = gate.username
    user = find_user_by_name(session, username)
    actor = _actor(username, user, source_ip)
    if gate.source.refused or gate.account is None:
        assert gate.source.locked_until is not None
        record_event(
            session,
            actor,
            "auth.login_failed",
            "user",
            user.id if user else None,
            {"reason": "source_locked", "locked_until": gate.source.locked_until.isoformat()},
        )
        return LoginResult(locked_until=gate.source.locked_until)
    if gate.account.refused:
        assert gate.account.locked_until is not None
        past_lock = _password_and_code_past_lock(session, user, password, code, settings)
        if past_lock is None:
            record_event(
                session,
                actor,
                "auth.login_failed",
                "user",
                user.id if user else None,
                {
                    "reason": "locked",
                    "with_code": bool(code),
                    "locked_until": gate.account.locked_until.isoformat(),
                },
            )
            return LoginResult(locked_until=gate.account.locked_until)
        assert user is not None
        lockout.reset(session, username)
        lockout.reset_source(session, source_ip)
        web_session, token = start_session(session, user, source_ip=source_ip, user_agent=user_agent)
        web_session.mfa_verified_at = clock.now()
        user.last_login_at = clock.now()
        record_event(
            session,
            actor,
            "auth.login",
            "user",
            user.id,
            {"session": web_session.id, "second_factor": "totp", "past_lock": True},
        )
        return LoginResult(user=user, web_session=web_session, token=token)
    password_ok = passwords.verify_password(user.password_hash if user else None, password)
    reason = _refusal(user, password_ok)
    if reason is not None:
        locked = lockout.current_lock(session, lockout.throttle_key(username))
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
    lockout.reset_source(session, source_ip)
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


def _password_and_code_past_lock(
    session: Session, user: User | None, password: str, code: str | None, settings: Settings
) -> User | None:
    """The user, when the password AND a fresh TOTP code are right (both always checked, so the
    time taken does not say which was wrong); else None."""
    if not code or user is None or not user.totp_enabled or user.totp_secret_encrypted is None:
        return None
    password_ok = passwords.verify_password(user.password_hash, password)
    seed = totp.unseal_seed(settings.secret_key, user.totp_secret_encrypted)
    step = totp.accepted_step(seed, code, user.totp_last_step)
    if not password_ok or step is None or _refusal(user, True) is not None:
        return None
    user.totp_last_step = step
    return user


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
    # The password was proven in this session, so the name's lock (which anyone can set) does not
    # stop this step; the source's does, and each wrong code counts on both.
    source = lockout.admit(session, lockout.source_key(source_ip), lockout.SOURCE_THRESHOLD)
    if source.refused:
        assert source.locked_until is not None
        record_event(
            session,
            actor,
            "auth.login_failed",
            "user",
            user.id,
            {
                "reason": "source_locked",
                "step": "second_factor",
                "locked_until": source.locked_until.isoformat(),
            },
        )
        return LoginResult(locked_until=source.locked_until)
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
        lockout.admit(session, lockout.throttle_key(user.username))
        locked = lockout.current_lock(session, lockout.source_key(source_ip))
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
    lockout.reset_source(session, source_ip)
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
