"""The in-process wake-up board, alone and signalled by the dispatcher after a commit that queued a
command (Android or Apple, pushes on or off); a rollback wakes nobody."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy.orm import Session, sessionmaker

from commands.queue import enqueue_command
from mdm.ground import clock
from mdm.ground.audit import Actor
from mdm.ground.config import Settings
from mdm.ground.db import transaction
from mdm.ground.models import Device, EnrollmentState
from mdm.ground.push.dispatcher import PushDispatcher
from mdm.ground.push.wakeups import (
    BOARD,
    WakeupBoard,
    WakeupBoardFull,
    signal_wakeups,
    wait_for_wakeup,
    watch_wakeup,
)
from tests.support.factories import make_device

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")


def _until(condition, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _waiting_thread(
    board: WakeupBoard, device_id: int, timeout: float
) -> tuple[threading.Thread, list[bool]]:
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(board.wait(device_id, timeout)), daemon=True)
    thread.start()
    return thread, results


# -- the board alone ---------------------------------------------------------------------------------


def test_a_signal_wakes_the_waiting_thread_of_that_device_only():
    board = WakeupBoard()
    thread_1, woken_1 = _waiting_thread(board, 1, 30)
    thread_2, woken_2 = _waiting_thread(board, 2, 30)
    assert _until(lambda: board.waiting(1) == 1 and board.waiting(2) == 1)

    assert board.signal([1, 1, 99]) == 1
    thread_1.join(10)
    assert woken_1 == [True]
    assert board.waiting(1) == 0 and board.waiting(2) == 1 and thread_2.is_alive()

    board.signal([2])
    thread_2.join(10)
    assert woken_2 == [True] and board.waiting() == 0


def test_a_waiter_that_times_out_is_removed_and_a_signal_is_not_stored():
    board = WakeupBoard()
    assert board.signal([5]) == 0  # nobody waits: nothing is kept for later
    assert board.waiting() == 0
    assert board.wait(5, 0.05) is False
    assert board.waiting() == 0 and board._waiting == {}


def test_watching_before_the_database_check_catches_a_signal_that_comes_before_the_wait():
    board = WakeupBoard()
    with board.watch(7) as wakeup:
        assert not wakeup.signalled
        board.signal([7])  # e.g. a commit between reading the queue and starting to wait
        assert wakeup.signalled and wakeup.wait(30) is True
    assert board.waiting() == 0


def test_every_waiter_of_a_device_is_woken_and_the_board_empties():
    board = WakeupBoard()
    threads = [_waiting_thread(board, 3, 30) for _ in range(20)]
    assert _until(lambda: board.waiting(3) == 20)
    assert board.signal([3]) == 20
    for thread, result in threads:
        thread.join(10)
        assert result == [True]
    assert board.waiting() == 0 and board._waiting == {}


def test_the_board_refuses_waiters_beyond_its_bound_and_recovers():
    board = WakeupBoard(max_waiters=2)
    with board.watch(1), board.watch(2):
        with pytest.raises(WakeupBoardFull):
            board.wait(3, 30)
        assert board.waiting() == 2
    assert board.waiting() == 0
    assert board.wait(3, 0) is False
    board.set_limit(1)
    with board.watch(1):
        with pytest.raises(WakeupBoardFull):
            board.wait(2, 30)
    with pytest.raises(ValueError):
        board.set_limit(0)


def test_module_functions_use_the_process_board():
    device_id = 10**9 + 1  # no real device has this id
    with watch_wakeup(device_id) as wakeup:
        assert BOARD.waiting(device_id) == 1
        assert signal_wakeups([device_id]) == 1
        assert wakeup.signalled
    assert wait_for_wakeup(device_id, 0) is False
    assert BOARD.waiting(device_id) == 0


# -- signalled by the dispatcher after commit ------------------------------------------------------------


def make_android_device(session: Session) -> Device:
    device = Device(
        platform="android",
        serial_number=f"AND{uuid.uuid4().hex[:9].upper()}",
        is_supervised=True,
        enrollment_state=EnrollmentState.ENROLLED,
        created_at=clock.now(),
        enrolled_at=clock.now(),
    )
    session.add(device)
    session.flush()
    return device


@pytest.fixture
def dispatcher(session_factory: sessionmaker[Session], settings: Settings) -> Iterator[PushDispatcher]:
    installed = PushDispatcher(session_factory, settings)
    installed.install()
    yield installed
    installed.close()


def test_a_commit_that_queues_a_command_wakes_the_long_poll_of_that_android_device(
    dispatcher, session_factory, android_request_type
):
    with transaction(session_factory) as s:
        device_id = make_android_device(s).id
        other_id = make_android_device(s).id

    thread, woken = _waiting_thread(BOARD, device_id, 30)
    assert _until(lambda: BOARD.waiting(device_id) == 1)
    with watch_wakeup(other_id) as other:
        with transaction(session_factory) as s:
            enqueue_command(s, s.get(Device, device_id), android_request_type, {}, actor=ADMIN)
        thread.join(10)
        assert woken == [True]
        assert not other.signalled
    assert BOARD.waiting(device_id) == 0
    assert dispatcher.wait_idle(10)


def test_a_rolled_back_command_wakes_nobody(dispatcher, session_factory, android_request_type):
    with transaction(session_factory) as s:
        device_id = make_android_device(s).id
    with watch_wakeup(device_id) as wakeup:
        with session_factory() as s:
            enqueue_command(s, s.get(Device, device_id), android_request_type, {}, actor=ADMIN)
            s.rollback()
        assert not wakeup.signalled
        with transaction(session_factory) as s:
            enqueue_command(s, s.get(Device, device_id), android_request_type, {}, actor=ADMIN)
        assert wakeup.signalled  # signalled in the committing thread, before any push


def test_apple_devices_are_signalled_too_and_pushes_off_still_signal(
    session_factory, settings, android_request_type
):
    quiet = PushDispatcher(session_factory, replace(settings, push_enabled=False))
    quiet.install()
    try:
        with transaction(session_factory) as s:
            ipad_id = make_device(s).id
            android_id = make_android_device(s).id
        with watch_wakeup(ipad_id) as ipad, watch_wakeup(android_id) as android:
            with transaction(session_factory) as s:
                enqueue_command(s, s.get(Device, ipad_id), "DeviceLock", {}, actor=ADMIN)
                enqueue_command(s, s.get(Device, android_id), android_request_type, {}, actor=ADMIN)
            assert ipad.signalled and android.signalled
    finally:
        quiet.close()
