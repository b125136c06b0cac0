"""A beacon: a generation counter that waiters watch, bumped by every signal of one channel."""

from __future__ import annotations

import threading


class Beacon:
    """Take a ticket BEFORE reading the database, wait with it AFTER: a bump in between is seen.

    Bumps are counted, never stored per waiter, so any number of waiters cost nothing to signal
    and nothing is kept for a waiter that left."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._generation = 0

    def ticket(self) -> int:
        with self._changed:
            return self._generation

    def wait(self, ticket: int, timeout: float) -> bool:
        """Block until a bump after `ticket` (True, at once if one happened already) or `timeout`."""
        with self._changed:
            return self._changed.wait_for(lambda: self._generation != ticket, max(0.0, timeout))

    def bump(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()
