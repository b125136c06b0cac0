"""The scheduler lock on its own: one holder at a time, released on release, and a holder whose
connection the server dropped knows it lost the lock."""

from __future__ import annotations

import gc
import os

import pytest
from sqlalchemy import text

from mdm.roots.scheduler.lock import (
    ADVISORY_KEY,
    LockUnreachable,
    PostgresAdvisoryLock,
    SqliteFileLock,
    scheduler_lock_for,
)


def test_lock_kind_follows_the_database(tmp_path):
    sqlite = scheduler_lock_for(f"sqlite:///{tmp_path / 'db' / 'hikeshi.db'}", tmp_path)
    assert isinstance(sqlite, SqliteFileLock) and sqlite.path == tmp_path / "db" / "hikeshi.scheduler.lock"
    assert isinstance(
        scheduler_lock_for("postgresql+psycopg://u@127.0.0.1/x", tmp_path), PostgresAdvisoryLock
    )


def test_file_lock_one_holder_at_a_time(tmp_path):
    first, second = SqliteFileLock(tmp_path / "s.lock"), SqliteFileLock(tmp_path / "s.lock")
    assert first.try_acquire() and first.still_held()
    assert not second.try_acquire()  # flock: each open file competes, even inside one process
    first.release()
    assert not first.still_held()
    assert second.try_acquire()
    second.release()


def test_advisory_lock_one_holder_and_lost_connection(database_url, engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's; SQLite uses the file lock")
    first, second = PostgresAdvisoryLock(database_url), PostgresAdvisoryLock(database_url)
    try:
        assert first.try_acquire() and first.still_held()
        assert not second.try_acquire()
        # The server drops the holder's connection (restart, network): the lock is gone and the
        # holder notices at its next check instead of running on without it.
        with engine.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND objid = :k AND granted"
                ),
                {"k": ADVISORY_KEY},
            )
        assert not first.still_held()
        assert second.try_acquire() and second.still_held()
    finally:
        first.release()
        second.release()


def _in_a_forked_child(action) -> None:
    """Run `action` in a forked child (as a gunicorn worker forked by a holder would) and wait."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            action()
            gc.collect()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_forked_child_never_releases_the_parents_file_lock(tmp_path):
    holder = SqliteFileLock(tmp_path / "s.lock")
    assert holder.try_acquire()
    try:
        # The child sees no lock of its own, and its release does not free the parent's flock.
        _in_a_forked_child(lambda: (holder.still_held() and os._exit(3), holder.release()))
        other = SqliteFileLock(tmp_path / "s.lock")
        assert not other.try_acquire() and holder.still_held()
    finally:
        holder.release()
    assert SqliteFileLock(tmp_path / "s.lock").try_acquire()


def test_a_forked_child_never_touches_the_parents_advisory_lock(database_url, engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's; SQLite uses the file lock")
    holder, other = PostgresAdvisoryLock(database_url), PostgresAdvisoryLock(database_url)
    try:
        assert holder.try_acquire()
        _in_a_forked_child(lambda: (holder.still_held() and os._exit(3), holder.release()))
        assert holder.still_held() and not other.try_acquire()
    finally:
        holder.release()
        other.release()


def test_an_unreachable_database_is_not_reported_as_another_scheduler():
    """With nothing listening, the lock says the database is unreachable, not that it is taken."""
    import socket

    with socket.socket() as probe:  # a free port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    lock = PostgresAdvisoryLock(f"postgresql+psycopg://postgres@127.0.0.1:{port}/test?connect_timeout=2")
    with pytest.raises(LockUnreachable):
        lock.try_acquire()
    assert not lock.still_held()
