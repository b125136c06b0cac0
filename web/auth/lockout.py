"""Login throttling: per account and per source address, with growing delays.

Two counters, each a row of `login_throttles`:

- `user:<name as typed>` (known or not, so the lockout never tells which accounts are real):
  after THRESHOLD failures the name is locked, 30 s doubling up to LONGEST_LOCK. Anyone can
  trigger it with wrong passwords, so it is not a wall: a user with TOTP passes it with the right
  password and a current code together (web.auth.login), an administrator can unlock it (API,
  console, CLI; audited), and the source throttle stops one attacker from keeping it shut.
- `source:<address>`: after SOURCE_THRESHOLD failures from one address (any names), that address
  is refused, with the same growing delay. Nothing passes it: it is what keeps guessing of
  passwords, and of TOTP codes by someone who has a password, expensive.

Counting is atomic: every attempt is admitted by one `UPDATE … RETURNING` on the row, which holds
the row's lock until the admitting transaction commits, and the attempt that reaches the
threshold locks the name for the others before its password is even checked. So N parallel
wrong passwords are checked at most THRESHOLD times and no failure is lost, on PostgreSQL as
on SQLite. The boundary commits the admission before the (slow) password check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.models.user import LoginThrottle

THRESHOLD = 5
SOURCE_THRESHOLD = 20
FIRST_LOCK = timedelta(seconds=30)
LONGEST_LOCK = timedelta(minutes=30)
# Failures this old no longer count: a user who mistyped last week starts fresh.
FORGET_AFTER = timedelta(hours=1)


def throttle_key(username: str) -> str:
    return "user:" + username.strip().lower()[:120]


def source_key(source_ip: str | None) -> str:
    return "source:" + (source_ip or "unknown")[:64]


@dataclass(frozen=True)
class Admission:
    """The outcome of admitting one attempt: refused while a lock holds, else checked."""

    key: str
    failures: int
    locked_until: datetime | None

    @property
    def refused(self) -> bool:
        return self.locked_until is not None and self.locked_until > clock.now()


def _row(session: Session, key: str) -> LoginThrottle | None:
    return session.scalars(select(LoginThrottle).where(LoginThrottle.key == key)).first()


def _ensure_row(session: Session, key: str) -> None:
    if _row(session, key) is not None:
        return
    try:
        with session.begin_nested():
            session.add(LoginThrottle(key=key, failures=0))
    except IntegrityError:
        pass  # a concurrent attempt for the same key created it first


def lock_duration(failures: int, threshold: int = THRESHOLD) -> timedelta | None:
    if failures < threshold:
        return None
    doublings = min(failures - threshold, 16)
    return min(FIRST_LOCK * (2**doublings), LONGEST_LOCK)


def admit(session: Session, key: str, threshold: int = THRESHOLD) -> Admission:
    """Count one attempt on `key` atomically, unless a lock holds (then nothing is counted).

    The attempt that reaches the threshold locks the key at once, before its own check: the
    ones racing it are refused. A right password afterwards clears the lock (`reset`)."""
    _ensure_row(session, key)
    now = clock.now()
    row = LoginThrottle.__table__.c
    holding = row.locked_until > now
    stale = or_(row.last_failure_at.is_(None), row.last_failure_at < now - FORGET_AFTER)
    failures, locked_until = session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == key)
        .values(
            failures=case((holding, row.failures), (stale, 1), else_=row.failures + 1),
            last_failure_at=case((holding, row.last_failure_at), else_=now),
        )
        .returning(row.failures, row.locked_until)
        .execution_options(synchronize_session=False)
    ).one()
    if locked_until is not None and locked_until > now:
        return Admission(key, failures, locked_until)
    duration = lock_duration(failures, threshold)
    if duration is not None:
        session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.key == key)
            .values(locked_until=now + duration)
            .execution_options(synchronize_session=False)
        )
    return Admission(key, failures, None)


def locked_until(session: Session, username: str) -> datetime | None:
    row = _row(session, throttle_key(username))
    if row is None or row.locked_until is None or row.locked_until <= clock.now():
        return None
    return row.locked_until


def current_lock(session: Session, key: str) -> datetime | None:
    """The lock of `key` (after an admitted attempt failed, for the message), or None."""
    session.expire_all()
    row = _row(session, key)
    if row is None or row.locked_until is None or row.locked_until <= clock.now():
        return None
    return row.locked_until


def reset(session: Session, username: str) -> None:
    _clear(session, throttle_key(username))


def reset_source(session: Session, source_ip: str | None) -> None:
    _clear(session, source_key(source_ip))


def _clear(session: Session, key: str) -> None:
    session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == key)
        .values(failures=0, locked_until=None)
        .execution_options(synchronize_session=False)
    )


def unlock(session: Session, username: str) -> bool:
    """An administrator's unlock of a name; returns whether it was locked."""
    was_locked = locked_until(session, username) is not None
    reset(session, username)
    return was_locked
