"""A background thread that does one piece of work after wake-ups: one pass takes every wake-up
that came while the previous pass ran (a batch).

With `gather`, passes start at most that often: a wake-up right after a pass waits out the rest
of the interval, so a busy server's requests are taken many to a pass (the statements of a pass
are shared by its batch: issue 18's statements per command cycle), while a wake-up after a quiet
spell starts its pass at once.

The thread ends after a short idle time and the next wake-up starts another. An idle thread
would hold its session factory, and with it the engine's pool and its open connections, for the
process's life: a factory its owner let go (a test's app, a CLI command's engine after dispose)
would keep PostgreSQL connections open until the server refused new clients. Starting a thread
costs far less than one request, so a busy server loses nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# Seconds without a wake-up after which the thread ends.
IDLE_EXIT_SECONDS = 2.0


class WakeWorker:
    def __init__(
        self,
        name: str,
        work: Callable[[], object],
        *,
        idle_exit: float = IDLE_EXIT_SECONDS,
        gather: float = 0.0,
    ) -> None:
        self._name = name
        self._work = work
        self._idle_exit = idle_exit
        self._gather = gather
        self._guard = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._thread: threading.Thread | None = None
        self._pid = 0

    def wake(self) -> None:
        with self._guard:
            # A forked worker inherits the object but not the thread: start one per process.
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._wake, self._stop = threading.Event(), threading.Event()
                self._idle = threading.Condition()
                self._thread = threading.Thread(
                    target=self._run, args=(self._wake, self._stop, self._idle), name=self._name, daemon=True
                )
                self._thread.start()
            with self._idle:
                self._busy = True
            # Set under the guard: a thread about to end for idleness looks at it under the guard.
            self._wake.set()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until the work every wake-up so far asked for is done."""
        with self._guard:
            idle = self._idle
        with idle:
            return idle.wait_for(lambda: not self._busy, timeout)

    def close(self, timeout: float = 10.0) -> bool:
        """Finish what was asked, then end the thread now rather than after its idle time."""
        done = self.wait_idle(timeout)
        with self._guard:
            thread, stop, wake = self._thread, self._stop, self._wake
            if thread is None:
                return done
            stop.set()
            wake.set()
        thread.join(timeout)
        return done and not thread.is_alive()

    def _run(self, wake: threading.Event, stop: threading.Event, idle: threading.Condition) -> None:
        started = float("-inf")
        while True:
            wake.wait(self._idle_exit)
            # Wake-ups that come while this waits join the pass (the flag is cleared after it).
            rest = started + self._gather - time.monotonic()
            if rest > 0 and wake.is_set():
                stop.wait(rest)
            started = time.monotonic()
            with self._guard:
                if stop.is_set() or not wake.is_set():
                    if self._thread is threading.current_thread():
                        self._thread = None
                    return
                wake.clear()
            try:
                self._work()
            except Exception:  # the caller's sweep retries; a wake-up must never end the process
                log.exception("%s: a pass failed; the next wake-up or the sweep retries", self._name)
            with idle:
                if not wake.is_set():
                    self._busy = False
                    idle.notify_all()
