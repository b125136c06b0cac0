"""Lockout with exponential backoff after repeated failed logins.

Keyed by the user name as typed, whether or not such a user exists, so the lockout itself never
tells an attacker which accounts are real.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mdm import clock
from mdm.models.user import LoginThrottle

THRESHOLD = 5
FIRST_LOCK = timedelta(seconds=30)
LONGEST_LOCK = timedelta(minutes=30)
# Failures this old no longer count: a user who mistyped last week starts fresh.
FORGET_AFTER = timedelta(hours=1)


def throttle_key(username: str) -> str:
    return "user:" + username.strip().lower()[:120]


def _row(session: Session, key: str) -> LoginThrottle | None:
    return session.scalars(select(LoginThrottle).where(LoginThrottle.key == key)).first()


def locked_until(session: Session, username: str) -> datetime | None:
    row = _row(session, throttle_key(username))
    if row is None or row.locked_until is None or row.locked_until <= clock.now():
        return None
    return row.locked_until


def lock_duration(failures: int) -> timedelta | None:
    if failures < THRESHOLD:
        return None
    doublings = min(failures - THRESHOLD, 16)
    return min(FIRST_LOCK * (2**doublings), LONGEST_LOCK)


def register_failure(session: Session, username: str) -> datetime | None:
    """Count a failure; returns the time the name is locked until, if this failure locks it."""
    key = throttle_key(username)
    now = clock.now()
    row = _row(session, key)
    if row is None:
        try:
            with session.begin_nested():
                row = LoginThrottle(key=key, failures=0)
                session.add(row)
        except IntegrityError:
            # A concurrent failure for the same name created it first.
            row = _row(session, key)
            assert row is not None
    if row.last_failure_at is not None and now - row.last_failure_at > FORGET_AFTER:
        row.failures = 0
    row.failures += 1
    row.last_failure_at = now
    duration = lock_duration(row.failures)
    row.locked_until = now + duration if duration else None
    return row.locked_until


def reset(session: Session, username: str) -> None:
    row = _row(session, throttle_key(username))
    if row is not None:
        row.failures = 0
        row.locked_until = None
