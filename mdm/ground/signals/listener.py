"""The one PostgreSQL connection per process that LISTENs for signals (mdm.ground.signals).

A daemon thread owns it: connect, LISTEN on every channel, then hand each notification to the hub.
A lost connection (PostgreSQL restarted, failed over, the backend terminated, the network cut) is
reopened with a growing delay. Whatever was notified while no connection listened is gone, so
every (re)connection is followed by an "everything" signal to each channel: every waiter re-reads
the database and finds what it missed. A quiet connection is checked every CHECK_SECONDS, and TCP
keepalives find a peer that vanished without closing, so a half-open connection does not leave
the process deaf for long.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

# How long one wait for notifications lasts before the thread looks at its stop flag.
WAIT_SECONDS = 1.0
# A connection with no traffic is probed this often (a cheap SELECT 1).
CHECK_SECONDS = 15.0
RECONNECT_FIRST = 0.2
RECONNECT_MAX = 5.0
CONNECT_TIMEOUT = 5
# libpq's TCP keepalives: a silently dead peer is noticed within about 20 s.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 2}

# (channel, payload); the payload "*" means everything (mdm.ground.signals.EVERYTHING).
Deliver = Callable[[str, str], None]
EVERYTHING = "*"


class PgListener:
    def __init__(self, conninfo: str, channels: Sequence[str], deliver: Deliver) -> None:
        self._conninfo = conninfo
        self._channels = tuple(channels)
        self._deliver = deliver
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._pid = os.getpid()
        self.connections = 0  # how many times a connection was (re)established; for diagnostics

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and self._pid == os.getpid()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stop = threading.Event()
            self._connected = threading.Event()
            self._thread = threading.Thread(target=self._run, name="hikeshi-signals", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None:
            thread.join(timeout)

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        stop = self._stop
        delay = RECONNECT_FIRST
        while not stop.is_set():
            try:
                with psycopg.connect(
                    self._conninfo,
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT,
                    application_name="hikeshi-signals",
                    **KEEPALIVES,  # type: ignore[arg-type]
                ) as conn:
                    for channel in self._channels:
                        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self.connections += 1
                    self._connected.set()
                    if self.connections > 1:
                        log.info("signals: listening again after a lost connection")
                    delay = RECONNECT_FIRST
                    # Listening from now on; what was notified before is unknown: look again.
                    for channel in self._channels:
                        self._deliver(channel, EVERYTHING)
                    checked = time.monotonic()
                    while not stop.is_set():
                        for note in conn.notifies(timeout=WAIT_SECONDS):
                            self._deliver(note.channel, note.payload)
                            checked = time.monotonic()
                        if time.monotonic() - checked >= CHECK_SECONDS:
                            conn.execute("SELECT 1")
                            checked = time.monotonic()
            except psycopg.Error as exc:
                was_connected = self._connected.is_set()
                self._connected.clear()
                if was_connected:
                    log.warning("signals: lost the listening connection (%s); reconnecting", exc)
                else:
                    log.debug("signals: cannot connect (%s); retrying in %.1f s", exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX)
            except Exception:  # a receiver bug must not end the thread: log, and listen on
                log.exception("signals: listener failed; reconnecting")
                self._connected.clear()
                stop.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX)
        self._connected.clear()
