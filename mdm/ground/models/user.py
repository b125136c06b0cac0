"""People and programs that operate Hikeshi: console users, their sessions and second factors,
API tokens, and the login throttle."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mdm.ground import clock
from mdm.ground.models.base import Base


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(255), default="")
    # Where the person is told what waits for them (a wipe to approve); None: not by e-mail.
    email: Mapped[str | None] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(16))
    # Set: the user sees and touches only this org unit and the units below it.
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    must_change_password: Mapped[bool] = mapped_column(default=True)
    password_changed_at: Mapped[datetime | None]
    # TOTP seed, sealed with the secret key (DESIGN.md invariant 4).
    totp_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_enabled_at: Mapped[datetime | None]
    # The last accepted TOTP time step: a code is never accepted twice.
    totp_last_step: Mapped[int | None]
    disabled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    last_login_at: Mapped[datetime | None]

    recovery_codes: Mapped[list[RecoveryCode]] = relationship(
        back_populates="user", cascade="all, delete-orphan", order_by="RecoveryCode.id"
    )

    @property
    def totp_enabled(self) -> bool:
        return self.totp_enabled_at is not None and self.totp_secret_encrypted is not None

    @property
    def active(self) -> bool:
        return self.disabled_at is None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username} {self.role}>"


class RecoveryCode(Base):
    """A one-time second factor for a user who lost the authenticator; only its hash is kept."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    used_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="recovery_codes")


class WebSession(Base):
    """A console login, kept on the server so that it can be ended at once (disable, logout)."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    # SHA-256 of the cookie value; the cookie itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    last_active_at: Mapped[datetime] = mapped_column(default=clock.now)
    mfa_verified_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None] = mapped_column(index=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))

    user: Mapped[User] = relationship()


class ApiToken(Base):
    """A bearer token for the REST API, with its own role and optional unit scope.

    Every token answers for someone: a person (`owner_user_id`, whose account must stay enabled
    for the token to work) or a named service account (`service_account`, for the dispatch
    systems), which is nobody in the two-person wipe rule and can neither request nor approve.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The public part of the token ("hks_<public_id>_<secret>"), shown in lists and logs.
    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    created_by: Mapped[str] = mapped_column(String(255))
    # SET NULL when the person is removed: a token with neither owner nor service account is refused.
    owner_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    service_account: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(255))
    last_used_at: Mapped[datetime | None]
    last_used_ip: Mapped[str | None] = mapped_column(String(64))


class LoginThrottle(Base):
    """Consecutive failed logins per username typed, known or not (no account enumeration)."""

    __tablename__ = "login_throttles"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failure_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
