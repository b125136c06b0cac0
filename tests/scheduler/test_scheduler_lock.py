"""The scheduler lock on its own: one holder at a time, released on release, and a holder whose
connection the server dropped knows it lost the lock."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from mdm.scheduler.lock import ADVISORY_KEY, PostgresAdvisoryLock, SqliteFileLock, scheduler_lock_for


def test_lock_kind_follows_the_database(tmp_path):
    sqlite = scheduler_lock_for(f"sqlite:///{tmp_path / 'db' / 'hikeshi.db'}", tmp_path)
    assert isinstance(sqlite, SqliteFileLock) and sqlite.path == tmp_path / "db" / "hikeshi.scheduler.lock"
    assert isinstance(
        scheduler_lock_for("postgresql+psycopg://u@127.0.0.1/x", tmp_path), PostgresAdvisoryLock
    )


def test_file_lock_one_holder_at_a_time(tmp_path):
    first, second = SqliteFileLock(tmp_path / "s.lock"), SqliteFileLock(tmp_path / "s.lock")
    assert first.try_acquire() and first.still_held()
    # filelock may share one lock per path inside a process; the cross-process case is tested
    # with real processes in test_scheduler_processes.py.
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
