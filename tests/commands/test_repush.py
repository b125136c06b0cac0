"""The re-push sweep: a waiting command's device is woken again, on a doubling schedule, once per
sweep, up to a cap; an unanswered inventory refresh then expires with its reason, a lock never."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from commands.queue import enqueue_command
from commands.repush import RepushPolicy, repush_waiting
from mdm.ground import clock
from mdm.ground.audit import Actor
from mdm.ground.models import AuditEvent, Command, CommandStatus, OutboxEntry, OutboxTopic
from tests.conftest import MovableClock
from tests.support.factories import make_device

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")
POLICY = RepushPolicy(timedelta(minutes=15), max_repushes=3)


@pytest.fixture
def moving_clock() -> Iterator[MovableClock]:
    moving = MovableClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    clock.set_clock(moving)
    yield moving
    clock.set_clock(None)


def _outbox(session) -> dict[int, OutboxEntry]:  # type: ignore[no-untyped-def]
    return {
        r.subject_id: r
        for r in session.scalars(select(OutboxEntry).where(OutboxEntry.topic == OutboxTopic.WAKE_DEVICE))
    }


def _forget_wakeups(session) -> None:  # type: ignore[no-untyped-def]
    for row in _outbox(session).values():
        session.delete(row)
    session.flush()


def test_the_wake_up_request_is_written_with_the_command_and_a_refresh_asks_again(session, moving_clock):  # type: ignore[no-untyped-def]
    device = make_device(session)
    first = enqueue_command(session, device, "DeviceInformation", {}, actor=ADMIN)
    row = _outbox(session)[device.id]
    assert row.attempts == 0 and row.requested_at == moving_clock()
    session.commit()
    moving_clock.advance(minutes=5)
    # A second refresh while one waits returns the waiting one, and asks for a wake-up again.
    assert enqueue_command(session, device, "DeviceInformation", {}, actor=ADMIN).id == first.id
    session.commit()
    session.expire_all()
    assert _outbox(session)[device.id].requested_at == moving_clock()

    fresh = make_device(session)
    enqueue_command(session, fresh, "DeviceLock", {}, actor=ADMIN)
    session.rollback()
    assert set(_outbox(session)) == {device.id}  # rolled back with the command it was for


def test_waiting_commands_are_re_pushed_on_a_doubling_schedule_once_per_device(session, moving_clock):  # type: ignore[no-untyped-def]
    device, other = make_device(session), make_device(session)
    for request_type in ("DeviceLock", "SecurityInfo", "ProfileList"):
        enqueue_command(session, device, request_type, {}, actor=ADMIN)
    enqueue_command(session, other, "SecurityInfo", {}, actor=ADMIN)
    _forget_wakeups(session)

    moving_clock.advance(minutes=14)
    assert repush_waiting(session, POLICY) == {"devices_repushed": 0, "expired": 0}
    moving_clock.advance(minutes=1)
    assert repush_waiting(session, POLICY) == {"devices_repushed": 2, "expired": 0}
    assert set(_outbox(session)) == {device.id, other.id}
    # One wake-up for the device; every command it will fetch counts it.
    counts = [
        c.repushes
        for c in session.scalars(select(Command).where(Command.device_id == device.id).order_by(Command.id))
    ]
    assert counts == [1, 1, 1]
    assert repush_waiting(session, POLICY)["devices_repushed"] == 0  # not again at the next sweep

    _forget_wakeups(session)
    moving_clock.advance(minutes=29)
    assert repush_waiting(session, POLICY)["devices_repushed"] == 0  # the second wait is twice the first
    moving_clock.advance(minutes=1)
    assert repush_waiting(session, POLICY)["devices_repushed"] == 2
    assert set(_outbox(session)) == {device.id, other.id}


def test_at_the_cap_a_refresh_expires_with_its_reason_and_a_lock_keeps_waiting(session, moving_clock):  # type: ignore[no-untyped-def]
    device = make_device(session)
    lock = enqueue_command(session, device, "DeviceLock", {}, actor=ADMIN)
    other = make_device(session)
    refresh = enqueue_command(session, other, "DeviceInformation", {}, actor=ADMIN)
    for wait in (15, 30, 60):
        moving_clock.advance(minutes=wait)
        assert repush_waiting(session, POLICY)["devices_repushed"] == 2
    assert (lock.repushes, refresh.repushes) == (3, 3)
    moving_clock.advance(minutes=120)
    assert repush_waiting(session, POLICY) == {"devices_repushed": 0, "expired": 1}
    assert refresh.status == CommandStatus.EXPIRED and refresh.expired_at == moving_clock()
    assert refresh.expired_reason == "no answer from the device after 3 wake-ups over 3.8 hours"
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "command.expired")).one()
    assert event.target_id == refresh.uuid and event.details["reason"] == refresh.expired_reason
    # The lock is never given up (DESIGN invariant 2): it waits for the device, unpushed now.
    assert lock.status == CommandStatus.QUEUED and lock.expired_reason is None
    # With the refresh gone, a new one can be asked for.
    assert enqueue_command(session, other, "DeviceInformation", {}, actor=ADMIN).id != refresh.id
