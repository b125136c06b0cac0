"""The push outbox: a wake-up request is a row written with its command; drainers claim due rows
without ever taking the same one twice; the outcome settles or postpones the row durably."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select

from mdm.ground import clock
from mdm.ground.db import make_session_factory, transaction
from mdm.ground.models import OutboxEntry, OutboxTopic
from mdm.ground.push import outbox, request_pushes

TOPIC = OutboxTopic.WAKE_DEVICE


def _rows(factory) -> dict[int, OutboxEntry]:  # type: ignore[no-untyped-def]
    with factory() as s:
        return {r.subject_id: r for r in s.scalars(select(OutboxEntry))}


def test_requests_join_claims_lease_and_outcomes_settle_or_postpone(session_factory):  # type: ignore[no-untyped-def]
    with transaction(session_factory) as s:
        request_pushes(s, [3, 1, 2])
        request_pushes(s, [2])  # asked twice before it is done: one row
    rows = _rows(session_factory)
    assert sorted(rows) == [1, 2, 3] and all(r.attempts == 0 for r in rows.values())
    # Fresh requests belong to the after-commit dispatcher for a grace period; drainers wait.
    with transaction(session_factory) as s:
        assert outbox.claim_due(s, TOPIC) == []
        for row in s.scalars(select(OutboxEntry)):
            row.next_attempt_at = clock.now() - timedelta(seconds=1)
    with transaction(session_factory) as s:
        assert outbox.claim_due(s, TOPIC) == [1, 2, 3]
    with transaction(session_factory) as s:
        assert outbox.claim_due(s, TOPIC) == []  # leased to the first drainer
    started = clock.now()
    with transaction(session_factory) as s:
        request_pushes(s, [3])  # a new request after the push began: must not be settled by it
        outbox.settle(s, TOPIC, [1, 3], requested_before=started)
        outbox.retry_later(s, TOPIC, [2], error="503 ServiceUnavailable", delay=timedelta(seconds=40))
    rows = _rows(session_factory)
    assert sorted(rows) == [2, 3]
    assert rows[2].attempts == 1 and rows[2].last_error == "503 ServiceUnavailable"
    assert rows[2].next_attempt_at > clock.now() + timedelta(seconds=30)
    with transaction(session_factory) as s:  # nothing retries for ever
        outbox.retry_later(s, TOPIC, [2], error="503", delay=timedelta(seconds=1), max_attempts=2)
    assert sorted(_rows(session_factory)) == [3]


def test_two_drainers_never_take_the_same_row(clean_database):  # type: ignore[no-untyped-def]
    # The server's sessions (SQLite: BEGIN IMMEDIATE), not the tests' read-mostly ones.
    session_factory = make_session_factory(clean_database)
    with transaction(session_factory) as s:
        request_pushes(s, list(range(1, 201)))
        for row in s.scalars(select(OutboxEntry)):
            row.next_attempt_at = clock.now() - timedelta(seconds=1)
    claimed: list[list[int]] = []
    barrier = threading.Barrier(4)

    def drainer() -> None:
        barrier.wait()
        taken: list[int] = []
        while True:
            with transaction(session_factory) as s:
                batch = outbox.claim_due(s, TOPIC, limit=7)
            if not batch:
                break
            taken.extend(batch)
        claimed.append(taken)

    threads = [threading.Thread(target=drainer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    everything = [i for taken in claimed for i in taken]
    assert sorted(everything) == list(range(1, 201))  # each row once, none lost
