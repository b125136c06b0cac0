"""A device request takes its device row before its commands, the order in which the push
dispatcher records pushes (its device rows, then one UPDATE stamping their pending commands'
pushed_at, rows in any order), so the two never wait for each other in a cycle. An answer once
settled its command and then claimed the next without the device row: under a check-in storm
while APNs recovered, each held a command the other wanted, and PostgreSQL broke the cycles as
deadlocks (tests/faults/test_checkin_storm.py).

Each test holds the device row as the dispatcher does, starts the device's request, and checks
that the request waits for the device row while it holds none of the device's commands: the
dispatcher, still holding the device, can lock every one of them at once (NOWAIT)."""

from __future__ import annotations

import plistlib
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from commands.delivery import next_command
from commands.queue import enqueue_command
from mdm.ground.db import transaction
from mdm.ground.models import Command, CommandStatus, Device
from tests.protocol.test_apple_loop import ADMIN, _enroll, _skip_first_inventory, fresh


def _postgres_only(session: Session) -> None:
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's; on SQLite every write transaction runs alone")


def _enrolled_device(client: Any, ipad: Any, session: Session) -> Device:
    _postgres_only(session)
    _enroll(client, ipad)
    _skip_first_inventory(session)
    return session.scalars(select(Device).where(Device.udid == ipad.udid)).one()


def _wait_for_a_lock_wait(session: Session, what: str) -> None:
    deadline = time.monotonic() + 30
    with session.get_bind().connect() as conn:
        while time.monotonic() < deadline:
            if conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one():
                return
            conn.rollback()
            time.sleep(0.02)
    raise AssertionError(f"{what} never waited for the device row the dispatcher holds")


def _run_while_the_dispatcher_holds_the_device(
    session: Session, factory: Any, device_id: int, request: Callable[[], None], what: str
) -> None:
    """Run `request` in a thread while another transaction holds the device row as the push
    dispatcher does; once it waits for that row, the holder must find every command free."""
    holder: Session = factory()
    holder.scalars(select(Device.id).where(Device.id == device_id).with_for_update(key_share=True)).one()
    thread = threading.Thread(target=request)
    try:
        thread.start()
        _wait_for_a_lock_wait(session, what)
        assert _commands_free(holder, device_id), f"{what} locked its commands before its device row"
        holder.commit()
    finally:
        holder.close()
    thread.join(30)
    assert not thread.is_alive()


def _commands_free(holder: Session, device_id: int) -> bool:
    """Whether the holder can lock every command of the device without waiting."""
    try:
        with holder.begin_nested():
            holder.execute(
                text("SELECT id FROM commands WHERE device_id = :d FOR NO KEY UPDATE NOWAIT"),
                {"d": device_id},
            ).all()
        return True
    except Exception as exc:  # psycopg's LockNotAvailable, wrapped by SQLAlchemy
        if "could not obtain lock" in str(exc):
            return False
        raise


def test_an_answer_waits_for_its_device_row_before_it_settles_its_command(
    client, ipad, session, session_factory
) -> None:
    device = _enrolled_device(client, ipad, session)
    device_id = device.id
    security = enqueue_command(session, device, "SecurityInfo", None, actor=ADMIN)
    following = enqueue_command(session, device, "ProfileList", None, actor=ADMIN)
    session.commit()
    handed = plistlib.loads(ipad.connect(client, ipad.idle_body()).data)
    assert handed["CommandUUID"] == security.uuid

    answered: dict[str, Any] = {}
    answer = ipad.result_body(
        security.uuid,
        SecurityInfo={"PasscodePresent": True, "PasscodeCompliant": True, "HardwareEncryptionCaps": 3},
    )
    _run_while_the_dispatcher_holds_the_device(
        session,
        session_factory,
        device_id,
        lambda: answered.update(response=ipad.connect(client, answer)),
        "the answer",
    )

    response = answered["response"]
    assert response.status_code == 200
    assert plistlib.loads(response.data)["CommandUUID"] == following.uuid
    fresh(session)
    assert session.get(Command, security.id).status == CommandStatus.ACKNOWLEDGED
    assert session.get(Command, following.id).status == CommandStatus.SENT


def test_a_delivery_reading_the_queue_takes_the_device_row_first(
    session, session_factory, client, ipad
) -> None:
    device = _enrolled_device(client, ipad, session)
    device_id = device.id
    lock = enqueue_command(session, device, "DeviceLock", {}, actor=ADMIN)
    session.commit()

    delivered: dict[str, Any] = {}

    def deliver() -> None:
        with transaction(session_factory) as s:
            found = next_command(s, s.get(Device, device_id), offer_not_now=True)
            delivered["uuid"] = found.uuid if found is not None else None

    _run_while_the_dispatcher_holds_the_device(session, session_factory, device_id, deliver, "the delivery")

    assert delivered["uuid"] == lock.uuid
    fresh(session)
    assert session.get(Command, lock.id).status == CommandStatus.SENT
