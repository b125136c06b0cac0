"""The lock that lets exactly one scheduler run jobs.

PostgreSQL: a session-level advisory lock held on a connection of its own, kept open for as long
as the scheduler is active. If the process dies, its connection closes and the server releases
the lock at once; a waiting scheduler takes it at its next poll. SQLite: an OS file lock on a
file beside the database, released by the kernel when the process dies.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from filelock import FileLock, Timeout
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

# Arbitrary constant naming the scheduler's advisory lock ("HKSC").
ADVISORY_KEY = 0x484B5343


class SchedulerLock(Protocol):
    def try_acquire(self) -> bool: ...

    def still_held(self) -> bool: ...

    def release(self) -> None: ...


class PostgresAdvisoryLock:
    def __init__(self, database_url: str) -> None:
        # NullPool: the connection holding the lock is never handed to anyone else, and closing
        # it really closes it.
        self._engine = create_engine(database_url, poolclass=NullPool)
        self._conn: Connection | None = None

    def try_acquire(self) -> bool:
        try:
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except Exception as exc:  # the database is down: keep waiting
            log.warning("scheduler lock: cannot connect: %s", exc)
            return False
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar())
        if got:
            self._conn = conn
        else:
            conn.close()
        return got

    def still_held(self) -> bool:
        if self._conn is None:
            return False
        try:
            held = self._conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                    "AND objid = :k AND granted"
                ),
                {"k": ADVISORY_KEY},
            ).scalar()
        except Exception as exc:
            log.error("scheduler lock: connection lost: %s", exc)
            self._drop()
            return False
        return bool(held)

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
            except Exception as exc:
                log.warning("scheduler lock: unlock failed (the lock goes with the connection): %s", exc)
        self._drop()
        self._engine.dispose()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # already broken
                log.debug("closing a broken lock connection", exc_info=True)
            self._conn = None


class SqliteFileLock:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = FileLock(str(path))

    def try_acquire(self) -> bool:
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        return True

    def still_held(self) -> bool:
        return self._lock.is_locked

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()


def scheduler_lock_for(database_url: str, instance_path: Path) -> SchedulerLock:
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return PostgresAdvisoryLock(database_url)
    database = url.database
    if database and database != ":memory:":
        return SqliteFileLock(Path(database).with_suffix(".scheduler.lock"))
    return SqliteFileLock(instance_path / "scheduler.lock")
