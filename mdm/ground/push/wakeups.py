"""The in-process wake-up board: a web thread holding a device's long poll sleeps here until a
commit queues something for that device.

The push dispatcher's after-commit hook signals the board for every device with a push request,
whatever its platform, before any APNs or MQTT work. The board is only a shortcut inside one
process: a waiter must re-read the database after waking (and every few seconds anyway), because
the commit may have happened in another worker or on another node. Signals are never stored: a
device with nobody waiting costs nothing, so memory is bounded by the number of waiting threads.

To avoid missing a commit that lands between "read the database" and "start waiting", watch
first, then read, then wait::

    with watch_wakeup(device.id) as wakeup:
        if not pending_commands(...):
            wakeup.wait(timeout)

A waiter that times out, or leaves the `with` block, is removed from the board.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager

# Each waiter is a blocked web thread, so this is far above any real thread pool; it only stops
# a runaway caller from growing the board without limit.
MAX_WAITERS = 10_000


class WakeupBoardFull(RuntimeError):
    """More threads wait than the board accepts; answer the poll now and let the device retry."""


class Wakeup:
    """One waiter's ticket: set once when its device is signalled, never reset."""

    __slots__ = ("_event", "device_id")

    def __init__(self, device_id: int) -> None:
        self.device_id = device_id
        self._event = threading.Event()

    def wait(self, timeout: float) -> bool:
        """Block until signalled or `timeout` seconds pass; True if signalled (now or earlier)."""
        return self._event.wait(max(0.0, timeout))

    @property
    def signalled(self) -> bool:
        return self._event.is_set()

    def _set(self) -> None:
        self._event.set()


class WakeupBoard:
    def __init__(self, max_waiters: int = MAX_WAITERS) -> None:
        if max_waiters < 1:
            raise ValueError("max_waiters must be at least 1")
        self._max_waiters = max_waiters
        self._lock = threading.Lock()
        self._waiting: dict[int, set[Wakeup]] = {}
        self._count = 0

    def set_limit(self, max_waiters: int) -> None:
        """Change the bound. A server whose web threads also serve the console and Apple devices
        can keep long polls to a share of them: beyond it, `watch` raises WakeupBoardFull."""
        if max_waiters < 1:
            raise ValueError("max_waiters must be at least 1")
        with self._lock:
            self._max_waiters = max_waiters

    @contextmanager
    def watch(self, device_id: int) -> Iterator[Wakeup]:
        """Register a waiter for `device_id` for the duration of the block (see the module doc)."""
        wakeup = self._register(device_id)
        try:
            yield wakeup
        finally:
            self._unregister(wakeup)

    def wait(self, device_id: int, timeout: float) -> bool:
        """Block until a wake-up for `device_id` is signalled after this call, or `timeout`."""
        with self.watch(device_id) as wakeup:
            return wakeup.wait(timeout)

    def signal(self, device_ids: Iterable[int]) -> int:
        """Wake every thread waiting for one of these devices; returns how many were woken."""
        woken: list[Wakeup] = []
        with self._lock:
            for device_id in set(device_ids):
                waiters = self._waiting.pop(device_id, None)
                if waiters:
                    self._count -= len(waiters)
                    woken.extend(waiters)
        for wakeup in woken:
            wakeup._set()
        return len(woken)

    def signal_all(self) -> int:
        """Wake every waiting thread (each re-reads the database): after the cross-process
        signal's connection was lost, no one knows which devices were signalled meanwhile."""
        with self._lock:
            device_ids = list(self._waiting)
        return self.signal(device_ids)

    def waiting(self, device_id: int | None = None) -> int:
        """How many threads wait (for one device, or in all); for tests and diagnostics."""
        with self._lock:
            if device_id is None:
                return self._count
            return len(self._waiting.get(device_id, ()))

    def _register(self, device_id: int) -> Wakeup:
        wakeup = Wakeup(device_id)
        with self._lock:
            if self._count >= self._max_waiters:
                raise WakeupBoardFull(f"{self._count} threads already wait for wake-ups")
            self._waiting.setdefault(device_id, set()).add(wakeup)
            self._count += 1
        return wakeup

    def _unregister(self, wakeup: Wakeup) -> None:
        with self._lock:
            waiters = self._waiting.get(wakeup.device_id)
            if waiters is None or wakeup not in waiters:
                return  # already taken off by signal()
            waiters.discard(wakeup)
            self._count -= 1
            if not waiters:
                del self._waiting[wakeup.device_id]


# The board of this process: the dispatcher of every app built in it signals here.
BOARD = WakeupBoard()


def watch_wakeup(device_id: int) -> AbstractContextManager[Wakeup]:
    """`with watch_wakeup(device_id) as wakeup:` register first, re-check the database, then wait."""
    return BOARD.watch(device_id)


def wait_for_wakeup(device_id: int, timeout: float) -> bool:
    """Block this thread until a commit asks to wake `device_id`, or `timeout` seconds; True if woken."""
    return BOARD.wait(device_id, timeout)


def signal_wakeups(device_ids: Iterable[int]) -> int:
    """Wake the threads waiting for these devices (called after commit); returns how many."""
    return BOARD.signal(device_ids)


def signal_all_wakeups() -> int:
    """Wake every thread waiting for any device; returns how many."""
    return BOARD.signal_all()
