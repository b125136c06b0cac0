"""Console users: create, change, disable, reset; first-administrator bootstrap.

Service functions in the usual sense (take the Session, never commit, audit every change); they
live in web/ because users exist only for the console and the API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import SYSTEM, Actor, record_event
from mdm.ground.config import Settings
from mdm.ground.models.user import RecoveryCode, User
from web.auth import passwords, recovery, totp
from web.auth.sessions import revoke_user_sessions
from web.i18n import N_
from web.rbac import USER_ROLES, Role

# "Leave as it is", distinct from None ("no unit: unscoped").
_KEEP: Any = object()
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
FIRST_ADMIN_NAME = "admin"


class UserError(ValueError):
    """A change to a user that is not allowed; `field` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def find_user(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def find_user_by_name(session: Session, username: str) -> User | None:
    return session.scalars(select(User).where(User.username == username.strip().lower())).first()


def _check_role(role: str) -> None:
    if role not in {r.value for r in USER_ROLES}:
        raise UserError("role", f"must be one of {', '.join(r.value for r in USER_ROLES)}")


def create_user(
    session: Session,
    *,
    username: str,
    role: str,
    actor: Actor,
    display_name: str = "",
    org_unit_id: int | None = None,
) -> tuple[User, str]:
    """Create a user with a one-time password (returned, shown once; change forced at first login)."""
    username = username.strip().lower()
    if not USERNAME_RE.match(username):
        raise UserError(
            "username", "2-64 characters: lowercase letters, digits, '.', '_' or '-', starting alphanumeric"
        )
    _check_role(role)
    if find_user_by_name(session, username) is not None:
        raise UserError("username", f"a user named {username} already exists")
    password = passwords.generate_one_time_password()
    now = clock.now()
    user = User(
        username=username,
        display_name=display_name.strip(),
        role=role,
        org_unit_id=org_unit_id,
        password_hash=passwords.hash_password(password),
        must_change_password=True,
        created_at=now,
        created_by=actor.name,
    )
    session.add(user)
    session.flush()
    record_event(
        session,
        actor,
        "user.created",
        "user",
        user.id,
        {"username": username, "role": role, "org_unit_id": org_unit_id, "display_name": user.display_name},
    )
    return user, password


def _active_unscoped_admins(session: Session) -> int:
    return (
        session.scalar(
            select(func.count(User.id)).where(
                User.role == Role.ADMIN.value, User.disabled_at.is_(None), User.org_unit_id.is_(None)
            )
        )
        or 0
    )


def _would_remove_last_admin(session: Session, user: User) -> bool:
    is_key_admin = user.role == Role.ADMIN.value and user.org_unit_id is None and user.active
    return is_key_admin and _active_unscoped_admins(session) <= 1


def update_user(
    session: Session,
    user: User,
    *,
    actor: Actor,
    acting_user_id: int | None = None,
    role: str | None = None,
    display_name: str | None = None,
    org_unit_id: Any = _KEEP,
) -> User:
    """Change role, name or unit scope. A role or scope change ends the user's sessions."""
    changes: dict[str, object] = {}
    if role is not None and role != user.role:
        _check_role(role)
        if acting_user_id == user.id:
            raise UserError("role", N_("you cannot change your own role"))
        changes["role"] = {"from": user.role, "to": role}
    if org_unit_id is not _KEEP and org_unit_id != user.org_unit_id:
        if acting_user_id == user.id:
            raise UserError("org_unit_id", N_("you cannot change your own scope"))
        changes["org_unit_id"] = {"from": user.org_unit_id, "to": org_unit_id}
    if ("role" in changes or "org_unit_id" in changes) and _would_remove_last_admin(session, user):
        raise UserError("role", N_("this is the last unscoped administrator; create another one first"))
    if display_name is not None and display_name.strip() != user.display_name:
        changes["display_name"] = {"from": user.display_name, "to": display_name.strip()}
        user.display_name = display_name.strip()
    if "role" in changes:
        user.role = str(role)
    if "org_unit_id" in changes:
        user.org_unit_id = org_unit_id
    if not changes:
        return user
    if "role" in changes or "org_unit_id" in changes:
        # A narrower role or scope must hold from the next request on, not from the next login.
        revoke_user_sessions(session, user.id, "privileges_changed")
    record_event(session, actor, "user.updated", "user", user.id, {"username": user.username, **changes})
    return user


# An address a mail server takes and a header cannot be smuggled into: ASCII, one @, a dotted
# domain of DNS labels; nothing else (no spaces, no line breaks, no display name).
EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
MAX_EMAIL = 254


def clean_email(value: str | None) -> str | None:
    """The address as stored (None for blank); UserError naming `email` when it is not one."""
    text = (value or "").strip()
    if not text:
        return None
    if len(text) > MAX_EMAIL or not EMAIL_RE.match(text):
        raise UserError("email", N_("not an e-mail address (like name@example.jp)"))
    return text


def set_user_email(session: Session, user: User, email: str | None, *, actor: Actor) -> bool:
    """Set or clear (blank) where the person is told of wipes waiting for them; audited."""
    address = clean_email(email)
    if address == user.email:
        return False
    record_event(
        session,
        actor,
        "user.email_changed",
        "user",
        user.id,
        {"username": user.username, "changes": {"email": {"from": user.email, "to": address}}},
    )
    user.email = address
    return True


def disable_user(session: Session, user: User, *, actor: Actor, acting_user_id: int | None = None) -> User:
    """Disable a user: every session of theirs stops working with the next request."""
    if acting_user_id == user.id:
        raise UserError("disabled", N_("you cannot disable yourself"))
    if user.disabled_at is not None:
        return user
    if _would_remove_last_admin(session, user):
        raise UserError("disabled", N_("this is the last unscoped administrator; create another one first"))
    user.disabled_at = clock.now()
    ended = revoke_user_sessions(session, user.id, "user_disabled")
    record_event(
        session, actor, "user.disabled", "user", user.id, {"username": user.username, "sessions_ended": ended}
    )
    return user


def enable_user(session: Session, user: User, *, actor: Actor) -> User:
    if user.disabled_at is None:
        return user
    user.disabled_at = None
    record_event(session, actor, "user.enabled", "user", user.id, {"username": user.username})
    return user


def reset_password(
    session: Session, user: User, *, actor: Actor, acting_user_id: int | None = None
) -> tuple[User, str]:
    """A new one-time password for a user who forgot theirs; ends their sessions."""
    if acting_user_id == user.id:
        raise UserError("password", N_("change your own password on your account page"))
    password = passwords.generate_one_time_password()
    user.password_hash = passwords.hash_password(password)
    user.must_change_password = True
    user.password_changed_at = clock.now()
    ended = revoke_user_sessions(session, user.id, "password_reset")
    record_event(
        session,
        actor,
        "user.password_reset",
        "user",
        user.id,
        {"username": user.username, "sessions_ended": ended},
    )
    return user, password


def reset_second_factor(
    session: Session, user: User, *, actor: Actor, acting_user_id: int | None = None
) -> User:
    """Forget the user's authenticator and recovery codes (lost phone); they enroll again at login."""
    if acting_user_id == user.id:
        raise UserError("totp", N_("ask another administrator to reset your second factor"))
    user.totp_secret_encrypted = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    user.recovery_codes.clear()
    ended = revoke_user_sessions(session, user.id, "mfa_reset")
    record_event(
        session,
        actor,
        "user.totp_reset",
        "user",
        user.id,
        {"username": user.username, "sessions_ended": ended},
    )
    return user


def unlock_user(session: Session, user: User, *, actor: Actor) -> User:
    """An administrator lifts the sign-in lock of a name (someone locked it with wrong passwords)."""
    from web.auth import lockout

    locked_until = lockout.locked_until(session, user.username)
    lockout.unlock(session, user.username)
    record_event(
        session,
        actor,
        "user.unlocked",
        "user",
        user.id,
        {"username": user.username, "was_locked_until": locked_until.isoformat() if locked_until else None},
    )
    return user


def change_password(
    session: Session, user: User, *, current: str, new: str, actor: Actor, keep_session_id: int | None = None
) -> User:
    """Change one's own password; every other session of the user ends (a leaked one-time
    password must not keep a second session alive)."""
    if not passwords.verify_password(user.password_hash, current):
        raise UserError("current_password", N_("the current password is wrong"))
    try:
        passwords.check_policy(new, username=user.username)
    except passwords.PasswordPolicyError as exc:
        raise UserError("new_password", str(exc)) from exc
    if passwords.verify_password(user.password_hash, new):
        raise UserError("new_password", N_("must differ from the current password"))
    forced = user.must_change_password
    user.password_hash = passwords.hash_password(new)
    user.must_change_password = False
    user.password_changed_at = clock.now()
    ended = revoke_user_sessions(session, user.id, "password_changed", keep_id=keep_session_id)
    record_event(
        session,
        actor,
        "user.password_changed",
        "user",
        user.id,
        {"username": user.username, "forced": forced, "other_sessions_ended": ended},
    )
    return user


def pending_totp_seed(session: Session, user: User, settings: Settings) -> str:
    """The seed the user is enrolling with; created (and kept, sealed) on first call."""
    if user.totp_enabled:
        raise UserError("totp", N_("two-factor authentication is already set up"))
    if user.totp_secret_encrypted is None:
        user.totp_secret_encrypted = totp.seal_seed(settings.secret_key, totp.new_seed())
        session.flush()
    return totp.unseal_seed(settings.secret_key, user.totp_secret_encrypted)


def confirm_totp(session: Session, user: User, code: str, settings: Settings, *, actor: Actor) -> list[str]:
    """Finish TOTP enrollment with a first valid code; returns fresh recovery codes (shown once)."""
    seed = pending_totp_seed(session, user, settings)
    step = totp.accepted_step(seed, code, None)
    if step is None:
        raise UserError("code", N_("the code is not valid; check the time on your phone and try again"))
    user.totp_enabled_at = clock.now()
    user.totp_last_step = step
    codes = replace_recovery_codes(session, user, settings)
    record_event(session, actor, "user.totp_enrolled", "user", user.id, {"username": user.username})
    return codes


def replace_recovery_codes(session: Session, user: User, settings: Settings) -> list[str]:
    codes = recovery.new_codes()
    user.recovery_codes.clear()
    session.flush()
    now = clock.now()
    for code in codes:
        user.recovery_codes.append(
            RecoveryCode(code_hash=recovery.code_hash(settings.secret_key, code), created_at=now)
        )
    session.flush()
    return codes


def unused_recovery_codes(user: User) -> int:
    return sum(1 for c in user.recovery_codes if c.used_at is None)


@dataclass(frozen=True)
class FirstAdmin:
    username: str
    password: str


def bootstrap_first_admin(session: Session, username: str = FIRST_ADMIN_NAME) -> FirstAdmin | None:
    """Create the first administrator when no user exists; None when there already is one.

    The one-time password is returned for printing once; the administrator must change it and
    enroll TOTP at first login. Called by the start command (`hikeshi user bootstrap`).
    """
    if session.scalar(select(func.count(User.id))):
        return None
    user, password = create_user(
        session, username=username, role=Role.ADMIN.value, display_name="Administrator", actor=SYSTEM
    )
    return FirstAdmin(user.username, password)
