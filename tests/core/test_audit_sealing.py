"""Audit events are sealed into the chain after their transaction commits (issue 18): a request
never holds the chain lock, and the chain stays tamper-evident."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground.audit import SEAL_GRACE, SYSTEM, record_event, seal_pending, verify_chain
from mdm.ground.audit_sealer import AuditSealer, seal_all
from mdm.ground.db import is_postgres, make_session_factory, transaction
from mdm.ground.models import AuditEvent
from mdm.roots.scheduler.context import JobContext
from mdm.roots.scheduler.jobs import run_job


@pytest.fixture
def bare_factory(clean_database: Engine) -> sessionmaker[Session]:
    """Sessions with no sealer attached: what a process that died right after commit leaves."""
    return make_session_factory(clean_database)


def _unsealed(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).where(AuditEvent.seq.is_(None))) or 0


def _seqs(factory: sessionmaker[Session]) -> list[int | None]:
    with factory() as session:
        return list(session.scalars(select(AuditEvent.seq).order_by(AuditEvent.id)))


def test_a_writer_never_waits_for_the_chain_lock(bare_factory: sessionmaker[Session]) -> None:
    """Two transactions write events at once; the second commits while the first is still open."""
    if not is_postgres(bare_factory.kw["bind"]):
        pytest.skip("SQLite serialises writers itself; events are sealed where they are written")
    first = bare_factory()
    record_event(first, SYSTEM, "test.first")
    first.flush()
    with transaction(bare_factory) as second:
        second.execute(text("SET LOCAL lock_timeout = '3s'"))  # a wait for the chain lock fails fast
        record_event(second, SYSTEM, "test.second")
    first.commit()
    first.close()
    assert _seqs(bare_factory) == [None, None]
    assert seal_all(bare_factory) == 2
    assert _seqs(bare_factory) == [1, 2]
    with bare_factory() as session:
        assert verify_chain(session).ok


def test_the_sealer_seals_right_after_commit(bare_factory: sessionmaker[Session]) -> None:
    sealer = AuditSealer(bare_factory).attach()
    try:
        with transaction(bare_factory) as session:
            record_event(session, SYSTEM, "test.event", "thing", 1)
        deadline = time.monotonic() + 30
        while _unsealed(bare_factory) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _seqs(bare_factory) == [1]
    finally:
        sealer.detach()


def test_a_detached_sealer_finishes_its_pass_and_ends(
    bare_factory: sessionmaker[Session],
) -> None:
    """A sealer still gathering after `detach` would seal what later commits elsewhere wrote (it
    did: another test's events, sealed under it)."""
    if not is_postgres(bare_factory.kw["bind"]):
        pytest.skip("SQLite seals events where they are written: no sealer thread")
    before = set(threading.enumerate())
    sealer = AuditSealer(bare_factory).attach()
    for n in range(2):  # the second wake-up waits out the first pass's gathering time
        with transaction(bare_factory) as session:
            record_event(session, SYSTEM, "test.event", "thing", n)
    assert sealer.detach()
    assert _unsealed(bare_factory) == 0
    left = [t for t in threading.enumerate() if t not in before and t.name == "hikeshi-audit-sealer"]
    assert left == []


def test_concurrent_writers_end_in_one_unbroken_chain(bare_factory: sessionmaker[Session]) -> None:
    sealer = AuditSealer(bare_factory).attach()
    barrier = threading.Barrier(4)

    def write(worker: int) -> None:
        barrier.wait()
        for n in range(10):
            with transaction(bare_factory) as session:
                record_event(session, SYSTEM, "test.event", "worker", worker, {"n": n})

    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(write, range(4)))
        seal_all(bare_factory)  # whatever the background thread has not reached yet
    finally:
        sealer.detach()
    assert sorted(s for s in _seqs(bare_factory) if s is not None) == list(range(1, 41))
    with bare_factory() as session:
        report = verify_chain(session)
    assert report.ok and report.checked == 40 and report.unsealed == 0


def test_the_scheduled_sweep_seals_what_a_dead_process_left(
    bare_factory: sessionmaker[Session], settings
) -> None:  # type: ignore[no-untyped-def]
    with transaction(bare_factory) as session:
        record_event(session, SYSTEM, "test.event")
        if not is_postgres(session):
            # SQLite seals as it writes; make the row look like PostgreSQL's unsealed one.
            session.flush()
            session.execute(update(AuditEvent).values(seq=None, prev_hash=None, hash=None))
    assert _unsealed(bare_factory) == 1
    run = run_job(JobContext(bare_factory, settings, "test"), "audit_seal")
    assert run.details == {"sealed": 1}
    assert _seqs(bare_factory) == [1]


def test_an_event_left_unsealed_too_long_is_reported(
    bare_factory: sessionmaker[Session], frozen_clock
) -> None:  # type: ignore[no-untyped-def]
    with transaction(bare_factory) as session:
        for n in range(3):
            record_event(session, SYSTEM, "test.event", "thing", n)
    seal_all(bare_factory)
    with transaction(bare_factory) as session:
        stuck = record_event(session, SYSTEM, "test.stuck")
        session.flush()
        session.execute(
            update(AuditEvent).where(AuditEvent.id == stuck.id).values(seq=None, prev_hash=None, hash=None)
        )
    with bare_factory() as session:
        fresh = verify_chain(session)
    assert fresh.ok and fresh.checked == 3 and fresh.unsealed == 1
    frozen_clock.advance(seconds=SEAL_GRACE.total_seconds() + 1)
    with bare_factory() as session:
        late = verify_chain(session)
    assert not late.ok and late.broken_id == stuck.id and "never sealed" in (late.reason or "")


def test_a_changed_sealed_row_is_still_named(bare_factory: sessionmaker[Session]) -> None:
    with transaction(bare_factory) as session:
        for n in range(4):
            record_event(session, SYSTEM, "test.event", "thing", n, {"n": n})
    seal_all(bare_factory)
    with transaction(bare_factory) as session:
        session.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2"))
    with bare_factory() as session:
        report = verify_chain(session)
    assert not report.ok and report.broken_seq == 2 and "hash" in (report.reason or "")


def test_sealing_twice_changes_nothing(bare_factory: sessionmaker[Session]) -> None:
    with transaction(bare_factory) as session:
        record_event(session, SYSTEM, "test.event")
    seal_all(bare_factory)
    with bare_factory() as session:
        before = session.scalars(select(AuditEvent.hash)).all()
    with transaction(bare_factory) as session:
        assert seal_pending(session) == 0
    with bare_factory() as session:
        assert session.scalars(select(AuditEvent.hash)).all() == before


def test_a_sealing_pass_writes_its_batch_in_one_statement(bare_factory: sessionmaker[Session]) -> None:
    """The device channel writes an audit event per answer: sealing 3 or 40 of them costs the
    same three statements (PostgreSQL; SQLite seals where it writes): the chain lock, the events
    with the chain's head beside them, their links. A batch short of full ends the pass: no
    second transaction to find nothing. And the chain verifies."""
    if not is_postgres(bare_factory.kw["bind"]):
        pytest.skip("SQLite seals events where they are written")
    from sqlalchemy import event as sa_event

    engine = bare_factory.kw["bind"]
    counts = []
    for batch in (3, 40):
        with transaction(bare_factory) as session:
            for n in range(batch):
                record_event(session, SYSTEM, "test.batch", "device", n, {"n": n})
        seen: list[str] = []

        def note(
            _conn: object,
            _cursor: object,
            statement: str,
            parameters: Any,
            _context: object,
            executemany: bool,
            seen: list[str] = seen,
        ) -> None:
            # The server runs an executemany's statement once per parameter set.
            seen.extend([statement] * (len(parameters) if executemany else 1))

        sa_event.listen(engine, "before_cursor_execute", note)
        try:
            assert seal_all(bare_factory) == batch
        finally:
            sa_event.remove(engine, "before_cursor_execute", note)
        counts.append(len(seen))
    assert counts == [3, 3], counts
    assert _unsealed(bare_factory) == 0
    assert _seqs(bare_factory) == list(range(1, 44))
    with bare_factory() as session:
        assert verify_chain(session).ok
