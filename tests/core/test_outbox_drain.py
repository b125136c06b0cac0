"""The outbox's drain (mdm.ground.outbox_drain): asked in the transaction, done once after it."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground import clock
from mdm.ground.db import make_session_factory, read_mostly, transaction
from mdm.ground.models import OutboxEntry
from mdm.ground.outbox_drain import OutboxDrainer, connect, drain
from mdm.ground.push import outbox

TOPIC = "test.drained"


def _drained_factory(engine: Any, handler: Any) -> sessionmaker[Session]:
    factory = make_session_factory(engine)
    connect(factory, [TOPIC], handler)
    drainer = OutboxDrainer(factory, background=False)
    for name, listener in drainer.listeners():
        event.listen(factory, name, listener)
    factory.drainer = drainer  # type: ignore[attr-defined]  # kept alive with the factory
    return factory


def _rows(factory: sessionmaker[Session]) -> list[OutboxEntry]:
    with factory() as s:
        return list(s.scalars(select(OutboxEntry).where(OutboxEntry.topic == TOPIC)))


def test_asked_in_a_commit_is_done_once_right_after_it_and_a_rollback_asks_nothing(clean_database):
    done: list[int] = []
    factory = _drained_factory(clean_database, lambda _s, subjects: done.extend(subjects[TOPIC]))

    with factory() as s:
        s.execute(select(1))  # what asks is a transaction that changed something
        outbox.ask(s, TOPIC, [3, 1])
        s.rollback()
        s.commit()
    assert done == [] and _rows(factory) == []

    with factory() as s:
        outbox.ask(s, TOPIC, [3, 1])
        outbox.ask(s, TOPIC, [2, 3])  # asked twice in one transaction: one row
        s.commit()
    assert sorted(done) == [1, 2, 3]
    assert _rows(factory) == []


def test_a_failing_row_holds_back_no_other_and_waits_its_turn(clean_database):
    done: list[int] = []

    def handler(_session: Session, subjects: dict[str, list[int]]) -> None:
        if 13 in subjects[TOPIC]:
            raise RuntimeError("subject 13 cannot be settled")
        done.extend(subjects[TOPIC])

    factory = make_session_factory(clean_database)
    connect(factory, [TOPIC], handler)
    with transaction(factory) as s:
        outbox.ask(s, TOPIC, range(1, 31))
        outbox.write_asked(s)

    assert drain(factory, batch=10) == 29
    assert sorted(done) == [i for i in range(1, 31) if i != 13]  # each once
    [left] = _rows(factory)
    assert (left.subject_id, left.attempts) == (13, 1)
    assert "subject 13 cannot be settled" in (left.last_error or "")
    assert left.next_attempt_at.replace(tzinfo=None) > clock.now().replace(tzinfo=None)
    assert drain(factory, batch=10) == 0  # not due again yet


def test_two_drainers_at_once_do_each_row_once(clean_database):
    """Two threads drain the same rows: SKIP LOCKED on PostgreSQL, the write lock on SQLite."""
    done: list[int] = []
    lock = threading.Lock()

    def handler(_session: Session, subjects: dict[str, list[int]]) -> None:
        time.sleep(0.01)  # the batch stays claimed while the other drainer looks
        with lock:
            done.extend(subjects[TOPIC])

    factory = make_session_factory(clean_database)
    connect(factory, [TOPIC], handler)
    with transaction(factory) as s:
        outbox.ask(s, TOPIC, range(1, 201))
        outbox.write_asked(s)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait(5)
            drain(factory, batch=7)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert sorted(done) == list(range(1, 201))  # none lost, none twice
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(OutboxEntry)) == 0


def test_a_drain_on_a_read_mostly_factory_holds_the_write_lock_from_its_first_read(clean_database):
    """A deferred SQLite transaction that reads, sees another connection commit, and then writes
    fails ("database is locked"): the drain reads its rows first, so it takes the lock at BEGIN."""
    if clean_database.dialect.name != "sqlite":
        pytest.skip("SQLite's write lock; on PostgreSQL the drain claims its rows FOR UPDATE")
    other_writer: list[str] = []

    def handler(_session: Session, subjects: dict[str, list[int]]) -> None:
        # Another process commits between the drain's read and its write, if SQLite lets it.
        other = sqlite3.connect(clean_database.url.database, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("DELETE FROM outbox WHERE topic = 'test.nothing'")
            other.execute("COMMIT")
            other_writer.append("committed")
        except sqlite3.OperationalError as exc:
            other_writer.append(str(exc))
        finally:
            other.close()

    factory = _drained_factory(read_mostly(clean_database), handler)
    with factory() as s:
        outbox.ask(s, TOPIC, [1])
        s.commit()
    assert other_writer == ["database is locked"]
    assert _rows(factory) == []  # drained, its rows deleted in the drain's own transaction
