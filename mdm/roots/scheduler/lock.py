"""The lock that lets exactly one scheduler run jobs.

PostgreSQL: a session-level advisory lock held on a connection of its own, kept open for as long
as the scheduler is active. If the process dies, its connection closes and the server releases
the lock at once; a waiting scheduler takes it at its next poll. SQLite: an OS file lock on a
file beside the database, released by the kernel when the process dies.

Both survive a fork of the holder (gunicorn's master forking web workers): the child never uses,
releases or closes the parent's lock.
"""

from __future__ import annotations

import fcntl
import logging
import os
import weakref
from pathlib import Path
from typing import Protocol

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


class LockUnreachable(Exception):
    """The lock's database cannot be reached: nobody is known to hold the lock, and nobody can take it."""


class PostgresAdvisoryLock:
    def __init__(self, database_url: str) -> None:
        # NullPool: the connection holding the lock is never handed to anyone else, and closing
        # it really closes it.
        self._engine = create_engine(database_url, poolclass=NullPool)
        self._conn: Connection | None = None
        self._owner_pid = 0

    def try_acquire(self) -> bool:
        try:
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except Exception as exc:
            raise LockUnreachable(str(exc)) from exc
        try:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar())
        except Exception as exc:
            conn.close()
            raise LockUnreachable(str(exc)) from exc
        if got:
            self._conn = conn
            self._owner_pid = os.getpid()
            _HELD_ADVISORY_LOCKS.add(self)
        else:
            conn.close()
        return got

    def still_held(self) -> bool:
        if self._conn is None or self._owner_pid != os.getpid():
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
        if self._owner_pid and self._owner_pid != os.getpid():
            return  # a forked child: the lock and its connection are the parent's
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
            except Exception as exc:
                log.warning("scheduler lock: unlock failed (the lock goes with the connection): %s", exc)
        self._drop()
        self._engine.dispose()

    def _forget_in_child(self) -> None:
        # The parent's session: never use it here, never let it be closed or collected here.
        _INHERITED.extend([self._conn, self._engine])
        self._conn = None

    def _drop(self) -> None:
        _HELD_ADVISORY_LOCKS.discard(self)
        self._owner_pid = 0
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # already broken
                log.debug("closing a broken lock connection", exc_info=True)
            self._conn = None


class SqliteFileLock:
    """An OS lock (flock) on a file beside the database, released by the kernel when the process
    dies.

    Fork-safe, because `hikeshi serve` runs the scheduler in gunicorn's master, which forks web
    workers while it holds the lock: a flock belongs to the open file, shared with every forked
    copy of the descriptor, so a worker unlocking (or a library's finalizer doing it) would free
    the master's lock. A child closes its copy without unlocking, and only the process that took
    the lock ever releases it.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd: int | None = None
        self._owner_pid = 0

    def try_acquire(self) -> bool:
        if self.still_held():
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd, self._owner_pid = fd, os.getpid()
        _HELD_FILE_LOCKS.add(self)
        return True

    def still_held(self) -> bool:
        return self._fd is not None and self._owner_pid == os.getpid()

    def release(self) -> None:
        if self._fd is None:
            return
        if self._owner_pid == os.getpid():
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        _HELD_FILE_LOCKS.discard(self)

    def _forget_in_child(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing a copy leaves the parent's flock in place
            self._fd = None


_HELD_FILE_LOCKS: weakref.WeakSet[SqliteFileLock] = weakref.WeakSet()
# Connections holding an advisory lock in a parent, inherited by a forked child: kept referenced
# for the child's lifetime so that no finalizer ever writes on the parent's socket.
_INHERITED: list[object] = []


def _after_fork_in_child() -> None:
    for lock in list(_HELD_FILE_LOCKS):
        lock._forget_in_child()
    _HELD_FILE_LOCKS.clear()
    for pg_lock in list(_HELD_ADVISORY_LOCKS):
        pg_lock._forget_in_child()
    _HELD_ADVISORY_LOCKS.clear()


_HELD_ADVISORY_LOCKS: weakref.WeakSet[PostgresAdvisoryLock] = weakref.WeakSet()
os.register_at_fork(after_in_child=_after_fork_in_child)


def scheduler_lock_for(database_url: str, instance_path: Path) -> SchedulerLock:
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return PostgresAdvisoryLock(database_url)
    database = url.database
    if database and database != ":memory:":
        return SqliteFileLock(Path(database).with_suffix(".scheduler.lock"))
    return SqliteFileLock(instance_path / "scheduler.lock")
