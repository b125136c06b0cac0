"""The cross-process signals (mdm.ground.signals): announced in a transaction, delivered only
after its commit; on PostgreSQL through one listening connection that comes back after it was
cut, and then tells every waiter to look again (what was notified meanwhile is gone)."""

from __future__ import annotations

import queue
import threading

import psycopg
import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground.db import make_session_factory, transaction
from mdm.ground.push import PENDING_PUSHES
from mdm.ground.push.wakeups import watch_wakeup
from mdm.ground.signals import (
    EVERYTHING,
    MAX_PAYLOADS,
    PAYLOAD_BYTES,
    READINESS,
    WAKE_DEVICES,
    Keys,
    SignalHub,
    announce,
    hub_for,
    parse_payload,
    payloads,
)
from mdm.roots.wiring import wire
from tests.faults.harness import wait_for


def test_payloads_stay_under_postgres_limit_and_round_trip() -> None:
    keys = [str(n) for n in range(3000)]
    parts = payloads(keys)
    assert len(parts) > 1
    assert all(len(p.encode()) <= PAYLOAD_BYTES for p in parts)
    back: set[str] = set()
    for part in parts:
        got = parse_payload(part)
        assert got is not None
        back |= got
    assert back == set(keys)
    # More than MAX_PAYLOADS payloads' worth: one "look again, everyone" instead.
    assert payloads([str(n) for n in range(MAX_PAYLOADS * PAYLOAD_BYTES // 5)]) == [EVERYTHING]
    assert parse_payload(EVERYTHING) is None


def test_unknown_channel_is_refused(session: Session) -> None:
    with pytest.raises(ValueError, match="unknown signal channel"):
        announce(session, "elsewhere", [1])


def _receiver() -> tuple[queue.Queue[Keys], object]:
    got: queue.Queue[Keys] = queue.Queue()

    def receive(keys: Keys) -> None:
        got.put(keys)

    return got, receive


def _hub(engine: Engine) -> SignalHub:
    """A hub of the test's own (the process's shared one serves the apps of other tests)."""
    hub = SignalHub(engine.url.render_as_string(hide_password=False))
    hub.start()
    assert hub.wait_listening(30), "the listening connection never came up"
    return hub


def _factory(engine: Engine, hub: SignalHub) -> sessionmaker[Session]:
    factory = make_session_factory(engine)
    for name, listener in hub.listeners():
        event.listen(factory, name, listener)
    return factory


def _keys_until(got: queue.Queue[Keys], wanted: frozenset[str] | None, seconds: float = 10) -> list[Keys]:
    """What arrived until `wanted` did (the listener's own "look again" may come first)."""
    seen: list[Keys] = []
    while True:
        keys = got.get(timeout=seconds)
        seen.append(keys)
        if keys == wanted or (wanted is not None and keys is not None and wanted <= keys):
            return seen


def test_a_signal_arrives_after_commit_and_never_after_rollback(clean_database: Engine) -> None:
    hub = _hub(clean_database)
    try:
        got, receive = _receiver()
        hub.subscribe(READINESS, receive)  # type: ignore[arg-type]
        factory = _factory(clean_database, hub)
        while not got.empty():
            got.get()
        with factory() as s:
            announce(s, READINESS, [41])
            s.rollback()
        with factory() as s:
            announce(s, READINESS, [42])
            assert got.empty()  # not before the commit
            s.commit()
        seen = _keys_until(got, frozenset({"42"}))
        assert all(keys is None or "41" not in keys for keys in seen)
    finally:
        hub.close()


def test_queued_commands_wake_a_long_poll_through_the_wiring(clean_database: Engine) -> None:
    """The wiring announces the devices a commit queued commands for; the process's hub wakes
    the long polls waiting for them (on PostgreSQL through its listening connection)."""
    factory = make_session_factory(clean_database)
    wiring = wire(factory, None, seal_in_background=False)
    assert wiring.signals is hub_for(clean_database.url)
    wiring.signals.start()
    assert wiring.signals.wait_listening(30)
    woken = threading.Event()

    def long_poll() -> None:
        with watch_wakeup(987654) as wakeup:
            ready.set()
            if wakeup.wait(20):
                woken.set()

    ready = threading.Event()
    waiter = threading.Thread(target=long_poll, daemon=True)
    waiter.start()
    assert ready.wait(10)
    with factory() as s:
        # What request_push notes on the session (its outbox row needs a real device; the
        # signal only reads the note).
        s.info.setdefault(PENDING_PUSHES, set()).add(987654)
        s.commit()
    assert woken.wait(10), "the long poll was not woken by the commit's signal"
    waiter.join(5)


def test_listener_comes_back_after_its_connection_is_cut_and_says_look_again(
    clean_database: Engine,
) -> None:
    if clean_database.dialect.name != "postgresql":
        pytest.skip("SQLite's signals never leave the process: there is no connection to lose")
    hub = _hub(clean_database)
    try:
        got, receive = _receiver()
        hub.subscribe(WAKE_DEVICES, receive)  # type: ignore[arg-type]
        factory = make_session_factory(clean_database)
        beacon = hub.beacon(WAKE_DEVICES)
        with factory() as s:
            s.execute(text("SELECT 1"))  # a pooled connection, kept while new ones are refused
            database = s.execute(text("SELECT current_database()")).scalar_one()
            s.commit()
        # Another database's connection: PostgreSQL refuses to close the current one to itself.
        admin_url = clean_database.url.set(drivername="postgresql", database="postgres")
        with psycopg.connect(admin_url.render_as_string(hide_password=False), autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
            try:
                row = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'hikeshi-signals' AND datname = %s",
                    (database,),
                ).fetchone()
                assert row is not None and row[0] >= 1
                wait_for(lambda: not hub.live, 10, "the listener to notice its connection is gone")
                while not got.empty():
                    got.get()
                ticket = beacon.ticket()
                # Committed while nobody listens: PostgreSQL drops this notification.
                with transaction(factory) as s:
                    announce(s, WAKE_DEVICES, [777])
                assert not beacon.wait(ticket, 0.5)
            finally:
                admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
        # Back: every waiter is told to look again (keys None), so device 777's poll re-reads.
        assert beacon.wait(ticket, 30)
        assert _keys_until(got, None, 30)[-1] is None
        assert hub.live
        with transaction(factory) as s:
            announce(s, WAKE_DEVICES, [778])
        assert _keys_until(got, frozenset({"778"}))
    finally:
        hub.close()
