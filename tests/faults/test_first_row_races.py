"""Two transactions creating the same first row both succeed (found by the 30-minute soak: the
offline check lost a run to a duplicate device_compliance key, a push batch lost its health write
to a duplicate service_health key)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground.db import is_postgres, transaction
from mdm.ground.health import mark_health
from mdm.ground.models import Device, DeviceCompliance, ServiceHealth
from mdm.services.compliance.evaluation import evaluate_device
from tests.support.factories import make_device

Write = Callable[[Session], None]


def _second_waits_then_succeeds(
    factory: sessionmaker[Session], first_write: Write, second_write: Write
) -> None:
    """`first_write` holds its new row uncommitted while `second_write` creates the same row in a
    thread; the second must wait for the first, then succeed."""
    if not is_postgres(factory.kw["bind"]):
        pytest.skip("SQLite serialises writers: two transactions never create a row at once")
    errors: list[BaseException] = []
    first = factory()
    first_write(first)
    first.flush()
    pid_holder: list[int] = []

    def second() -> None:
        try:
            with transaction(factory) as session:
                pid_holder.append(session.scalar(text("SELECT pg_backend_pid()")))
                second_write(session)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    worker = threading.Thread(target=second)
    worker.start()
    deadline = time.monotonic() + 30
    with factory() as observer:  # wait until the second transaction is blocked on our row
        while time.monotonic() < deadline:
            if pid_holder and observer.scalar(
                text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": pid_holder[0]},
            ):
                break
            observer.rollback()
            time.sleep(0.01)
        else:
            pytest.fail("the second transaction never reached the row lock")
    first.commit()
    first.close()
    worker.join(30)
    assert not worker.is_alive() and errors == []


def test_two_first_evaluations_of_one_device(session_factory: sessionmaker[Session]) -> None:
    with transaction(session_factory) as session:
        device_id = make_device(session).id

    def evaluate(session: Session) -> None:
        device = session.get_one(Device, device_id)
        evaluate_device(session, device)

    _second_waits_then_succeeds(session_factory, evaluate, evaluate)
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(DeviceCompliance)) == 1


def test_two_first_health_records(session_factory: sessionmaker[Session]) -> None:
    _second_waits_then_succeeds(
        session_factory,
        lambda s: mark_health(s, "apns", False, "no answer from APNs"),
        lambda s: mark_health(s, "apns", True, "ok"),
    )
    with session_factory() as session:
        row = session.get_one(ServiceHealth, "apns")
        assert (row.healthy, row.detail) == (True, "ok")  # the later writer's state, not a lost one
