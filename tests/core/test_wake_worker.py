"""The background threads behind the audit sealer and the outbox drain (mdm.ground.wake_worker):
one pass per burst of wake-ups, none lost, and a thread that ends when idle or closed, so an
application that was let go leaves no PostgreSQL connection open (CI once ran out of them)."""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from mdm.ground.audit import SYSTEM, record_event
from mdm.ground.db import is_postgres, transaction
from mdm.ground.wake_worker import WakeWorker


def _workers(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_every_wake_up_is_served_and_close_ends_the_thread() -> None:
    passes: list[int] = []
    running, release = threading.Event(), threading.Event()

    def work() -> None:
        passes.append(len(passes))
        running.set()
        release.wait(5)

    worker = WakeWorker("test-wake-worker-close", work, idle_exit=60)
    worker.wake()
    assert running.wait(5)
    worker.wake()  # both during the first pass: one more pass takes them
    worker.wake()
    assert not worker.wait_idle(0.05)
    release.set()
    assert worker.wait_idle(5)
    assert len(passes) == 2
    assert worker.close(5)
    assert _workers("test-wake-worker-close") == []
    worker.wake()  # a wake-up after close starts a new thread
    assert worker.wait_idle(5) and len(passes) == 3
    assert worker.close(5)


def test_an_idle_thread_ends_by_itself_and_the_next_wake_up_starts_another() -> None:
    passes: list[int] = []
    worker = WakeWorker("test-wake-worker-idle", lambda: passes.append(1), idle_exit=0.05)
    for _ in range(20):
        worker.wake()
        assert worker.wait_idle(5)
        threading.Event().wait(0.07)  # longer than the idle time: the thread may be ending now
    deadline = threading.Event()
    for _ in range(100):
        if not _workers("test-wake-worker-idle"):
            break
        deadline.wait(0.05)
    assert _workers("test-wake-worker-idle") == []
    # Every one of the 20 wake-ups came after the previous pass ended: each had its own pass.
    assert len(passes) == 20


def test_a_failing_pass_leaves_the_worker_serving() -> None:
    calls: list[int] = []

    def work() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database went away")

    worker = WakeWorker("test-wake-worker-fail", work, idle_exit=60)
    worker.wake()
    assert worker.wait_idle(5)
    worker.wake()
    assert worker.wait_idle(5)
    assert len(calls) == 2
    assert worker.close(5)


def _our_connections(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                    " AND application_name <> 'hikeshi-signals'"
                )
            ).scalar_one()
        )


def test_closed_applications_leave_no_connection_open(
    settings: Any, device_ca: Any, clean_database: Engine
) -> None:
    """Each application's commit wakes its sealer; closed and let go, none keeps a connection."""
    if not is_postgres(clean_database):
        pytest.skip("SQLite has no server-side connections to count")
    from mdm import create_app

    before = _our_connections(clean_database)
    for _ in range(5):
        application = create_app(replace(settings, device_ca_file=str(device_ca.path)))
        factory = application.extensions["hikeshi"].session_factory
        with transaction(factory) as session:
            record_event(session, SYSTEM, "test.wake_the_sealer")
        application.extensions["hikeshi.wiring"].close(10)
        application.extensions["hikeshi"].engine.dispose()
        del application, factory
    gc.collect()
    assert _workers("hikeshi-audit-sealer") == []
    assert _our_connections(clean_database) <= before


def test_with_gather_a_pass_starts_at_once_after_a_quiet_spell_and_a_burst_waits_for_one_pass() -> None:
    gather = 1.0
    starts: list[float] = []
    worker = WakeWorker("test-wake-worker-gather", lambda: starts.append(time.monotonic()), gather=gather)
    woken = time.monotonic()
    worker.wake()
    assert worker.wait_idle(5)
    for _ in range(5):  # right after the first pass: they wait out the interval, then one pass
        worker.wake()
    assert worker.wait_idle(5)
    assert len(starts) == 2
    assert starts[0] - woken < gather  # the first did not wait
    assert starts[1] - starts[0] >= gather
    assert worker.close(5)
