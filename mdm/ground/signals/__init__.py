"""Cross-process signals: "this changed, look again", from the transaction that changed something
to every process that waits for it, on every node.

Two channels today: `WAKE_DEVICES` (commands were queued for these devices: an Android long poll
answers) and `READINESS` (readiness events were written: an SSE stream reads them). A signal
carries no data a waiter trusts: it only says when to re-read the database, so a lost or
duplicated signal costs latency, never correctness.

- `announce(session, channel, keys)` in the transaction that made the change. On PostgreSQL it is
  a `NOTIFY` in that same transaction, so PostgreSQL delivers it to every listening process only
  if and when the transaction commits. On SQLite (one node) it is noted on the session and
  delivered inside this process after the commit (the listeners of `SignalHub.listeners`).
- `hub_for(url)` is this process's hub for a database: one per process, however many apps the
  process builds. On PostgreSQL it holds ONE listening connection (mdm.ground.signals.listener),
  opened by `start()`, reconnecting after a database restart; after each (re)connection it
  signals "everything" (keys None), so a waiter re-reads whatever changed while nobody listened.
- A waiter takes a `Beacon.ticket()` before reading the database, then `Beacon.wait(ticket, ...)`:
  a signal landing between the read and the wait is not missed. Receivers (`subscribe`) get the
  keys of every signal, e.g. to wake the long polls of those devices.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from mdm.ground.signals.beacon import Beacon
from mdm.ground.signals.listener import EVERYTHING, PgListener

log = logging.getLogger(__name__)

WAKE_DEVICES = "hikeshi_wake"  # keys: device ids with newly queued commands
READINESS = "hikeshi_readiness"  # keys: the newest readiness event id written
CHANNELS = (WAKE_DEVICES, READINESS)
# PostgreSQL refuses a NOTIFY payload of 8000 bytes or more; a signal is split below that, and one
# naming more keys than MAX_PAYLOADS payloads can carry says "everything" instead.
PAYLOAD_BYTES = 7000
MAX_PAYLOADS = 16
_NOTED = "hikeshi.signals.noted"
# pg_notify rather than NOTIFY: the channel and payload are bound parameters, never spliced.
NOTIFY = text("SELECT pg_notify(:channel, :payload)")

# Keys of one signal, or None: anything may have changed (after a reconnect, or a huge signal).
Keys = frozenset[str] | None
Receiver = Callable[[Keys], None]


def announce(session: Session, channel: str, keys: Iterable[object]) -> None:
    """Signal `channel` for `keys` when (and only if) the session's transaction commits."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown signal channel {channel!r}")
    wanted = sorted({str(key) for key in keys})
    if not wanted:
        return
    if session.get_bind().dialect.name == "postgresql":
        for payload in payloads(wanted):
            session.execute(NOTIFY, {"channel": channel, "payload": payload})
    else:
        session.info.setdefault(_NOTED, {}).setdefault(channel, set()).update(wanted)


def payloads(keys: list[str]) -> list[str]:
    """The NOTIFY payloads carrying `keys`: comma-separated, each under PAYLOAD_BYTES."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    for key in keys:
        if EVERYTHING in key or "," in key:
            return [EVERYTHING]
        length = len(key.encode()) + 1
        if current and size + length > PAYLOAD_BYTES:
            out.append(",".join(current))
            current, size = [], 0
        current.append(key)
        size += length
    if current:
        out.append(",".join(current))
    return out if len(out) <= MAX_PAYLOADS else [EVERYTHING]


def parse_payload(payload: str) -> Keys:
    if payload == EVERYTHING or not payload:
        return None
    return frozenset(payload.split(","))


class SignalHub:
    """This process's end of the signals of one database (see the module doc)."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.postgres = parsed.get_backend_name() == "postgresql"
        self._lock = threading.Lock()
        self._receivers: dict[str, list[Receiver]] = {channel: [] for channel in CHANNELS}
        self._beacons = {channel: Beacon() for channel in CHANNELS}
        self._listener: PgListener | None = None
        self._session_listeners = self._make_listeners()
        if self.postgres:
            conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
            self._listener = PgListener(conninfo, CHANNELS, self._notified)

    # -- waiting -----------------------------------------------------------------------------

    def beacon(self, channel: str) -> Beacon:
        return self._beacons[channel]

    def subscribe(self, channel: str, receiver: Receiver) -> None:
        """Call `receiver(keys)` for every signal of `channel` (once, however often subscribed)."""
        with self._lock:
            if receiver not in self._receivers[channel]:
                self._receivers[channel].append(receiver)

    @property
    def live(self) -> bool:
        """Whether a change committed by ANY process reaches this one's waiters now: PostgreSQL
        with the listener connected. SQLite's signals stay inside the committing process (other
        worker processes of the same server poll), and a disconnected listener hears nothing."""
        return self._listener is not None and self._listener.connected

    # -- running -----------------------------------------------------------------------------

    def start(self) -> None:
        """Open the listening connection (PostgreSQL; returns at once, connects in background)."""
        if self._listener is not None:
            self._listener.start()

    def close(self, timeout: float = 5.0) -> None:
        if self._listener is not None:
            self._listener.stop(timeout)

    def wait_listening(self, timeout: float) -> bool:
        """Block until the listener is connected (True), or `timeout`; True at once on SQLite."""
        return self._listener is None or self._listener.wait_connected(timeout)

    def _notified(self, channel: str, payload: str) -> None:
        self.deliver(channel, parse_payload(payload))

    def deliver(self, channel: str, keys: Keys) -> None:
        """A signal arrived (from PostgreSQL, or from a commit in this process)."""
        if channel not in self._beacons:
            return
        with self._lock:
            receivers = list(self._receivers[channel])
        for receiver in receivers:
            try:
                receiver(keys)
            except Exception:  # one receiver's bug never silences the others
                log.exception("signal receiver %r failed", receiver)
        self._beacons[channel].bump()

    def listeners(self) -> list[tuple[str, Callable[..., None]]]:
        """(event, listener) of a session factory: SQLite's signals delivered after commit.

        The same two functions for every factory of the database in this process: a commit of
        any of them is a change of the one database every waiter here watches."""
        return list(self._session_listeners)

    def _make_listeners(self) -> list[tuple[str, Callable[..., None]]]:
        def after_commit(session: Session) -> None:
            noted: dict[str, set[str]] | None = session.info.pop(_NOTED, None)
            for channel, keys in (noted or {}).items():
                self.deliver(channel, frozenset(keys))

        def after_soft_rollback(session: Session, previous: Any) -> None:
            if not getattr(previous, "nested", False):
                session.info.pop(_NOTED, None)

        return [("after_commit", after_commit), ("after_soft_rollback", after_soft_rollback)]


_HUBS: dict[tuple[int, str], SignalHub] = {}
_HUBS_LOCK = threading.Lock()


def hub_for(url: str | Any) -> SignalHub:
    """This process's hub for the database at `url` (a URL string or SQLAlchemy URL/engine URL).

    Keyed by process id too: a forked worker never inherits its parent's listener thread."""
    key_url = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    key = (os.getpid(), key_url)
    with _HUBS_LOCK:
        hub = _HUBS.get(key)
        if hub is None:
            hub = _HUBS[key] = SignalHub(key_url)
        return hub


__all__ = [
    "CHANNELS",
    "EVERYTHING",
    "READINESS",
    "WAKE_DEVICES",
    "Beacon",
    "Keys",
    "SignalHub",
    "announce",
    "hub_for",
    "parse_payload",
    "payloads",
]
