"""Shared fixtures: a real database (SQLite file, or PostgreSQL when HIKESHI_TEST_DATABASE_URL is
set), migrated with the real Alembic migrations, emptied before each test."""

from __future__ import annotations

import gc
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground import clock
from mdm.ground.config import Settings
from mdm.ground.db import make_engine, make_session_factory, read_mostly, upgrade_database
from mdm.ground.models import Base
from mdm.roots.wiring import wire

pytest_plugins = ["tests.support.apns_server"]


def _admin_connection(base_url: str):  # type: ignore[no-untyped-def]
    """A connection for CREATE/DROP DATABASE: to the URL's database, or to `postgres` when that
    one does not exist (the README's URL names `test`, which a fresh server does not have)."""
    import psycopg

    url = make_url(base_url).set(drivername="postgresql")
    try:
        return psycopg.connect(
            url.set(database=url.database or "postgres").render_as_string(hide_password=False),
            autocommit=True,
        )
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc) or url.database in (None, "postgres"):
            raise
        return psycopg.connect(
            url.set(database="postgres").render_as_string(hide_password=False), autocommit=True
        )


def _fresh_postgres_database(base_url: str) -> tuple[str, str]:
    """Create a database of our own on the server, so concurrent runs never share one."""
    url = make_url(base_url)
    name = f"hikeshi_test_{secrets.token_hex(4)}"
    with _admin_connection(base_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        # A test's commits need not survive a crash of the server: not waiting for each one's WAL
        # flush takes about half of a PostgreSQL run's time. Production keeps the server's setting.
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    return url.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False), name


def _drop_postgres_database(base_url: str, name: str) -> None:
    with _admin_connection(base_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    base = os.environ.get("HIKESHI_TEST_DATABASE_URL")
    if base:
        url, name = _fresh_postgres_database(base)
        upgrade_database(url)
        yield url
        _drop_postgres_database(base, name)
        return
    with tempfile.TemporaryDirectory(prefix="hikeshi-db-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'test.db'}"
        upgrade_database(url)
        yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


# A background thread of the previous test's app (a drain, the audit sealer, a push record) may
# still hold a table when TRUNCATE wants all of them: PostgreSQL then picks one as the deadlock's
# victim. The thread finishes in moments, so the TRUNCATE is tried again, a bounded number of times.
_TRUNCATE_ATTEMPTS = 20


def _empty_all_tables(engine: Engine) -> None:
    tables = list(reversed(Base.metadata.sorted_tables))
    if engine.dialect.name == "postgresql":
        names = ", ".join(f'"{t.name}"' for t in tables)
        for attempt in range(1, _TRUNCATE_ATTEMPTS + 1):
            try:
                with engine.begin() as conn:
                    conn.execute(text("SET LOCAL lock_timeout = '5s'"))
                    _truncate_what_was_used(conn, tables, names)
                return
            except OperationalError as exc:
                if attempt == _TRUNCATE_ATTEMPTS or getattr(exc.orig, "sqlstate", None) not in (
                    "40P01",  # deadlock_detected
                    "55P03",  # lock_not_available (lock_timeout)
                ):
                    raise
                time.sleep(0.05 * attempt)
        return
    with engine.begin() as conn:
        for table in tables:
            conn.execute(table.delete())
        conn.execute(text("DELETE FROM sqlite_sequence")) if _has_sqlite_sequence(conn) else None


def _truncate_what_was_used(conn, tables: list[Any], names: str) -> None:  # type: ignore[no-untyped-def]
    """TRUNCATE ... RESTART IDENTITY CASCADE of every table, at the cost of the tables a test
    wrote to: TRUNCATE's price is per table (new files for the table and its indexes), a second
    per test for all 75 on a busy server, though a test writes to a handful. Every table is locked
    first, as the TRUNCATE of all of them did, so a writer still in flight finishes before the
    look; then the tables holding rows are truncated and every sequence that handed out a value
    is restarted (an empty table's too: its rows were deleted or rolled back)."""
    conn.execute(text(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE"))
    probes = " UNION ALL ".join(
        f"SELECT '{t.name}' WHERE EXISTS (SELECT 1 FROM \"{t.name}\")" for t in tables
    )
    used = [f'"{row[0]}"' for row in conn.execute(text(probes))]
    if used:
        conn.execute(text(f"TRUNCATE {', '.join(used)} RESTART IDENTITY CASCADE"))
    # The sequences RESTART IDENTITY restarts: those owned by a column of our tables.
    sequences = conn.execute(
        text(
            "SELECT s.oid::regclass::text FROM pg_class s"
            " JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid"
            " AND d.deptype IN ('a', 'i')"
            " JOIN pg_class t ON t.oid = d.refobjid"
            " WHERE s.relkind = 'S' AND t.relnamespace = current_schema()::regnamespace"
            " AND t.relname = ANY(:tables)"
            # CASE: the planner may test this before relkind, and the function refuses a table.
            " AND CASE WHEN s.relkind = 'S' THEN pg_sequence_last_value(s.oid) IS NOT NULL END"
        ),
        {"tables": [t.name for t in tables]},
    ).scalars()
    for sequence in list(sequences):
        conn.execute(text(f"ALTER SEQUENCE {sequence} RESTART"))


def _has_sqlite_sequence(conn) -> bool:  # type: ignore[no-untyped-def]
    return conn.execute(text("SELECT 1 FROM sqlite_master WHERE name='sqlite_sequence'")).first() is not None


# Open connections to the test database above which the garbage collector is asked to free the
# pools of apps that tests let go of. Well under the server's limit (100 by default), so one test's
# own connections always fit; a full collection costs about 0.25 s late in the run, too much to
# pay after every test.
_CONNECTIONS_BEFORE_COLLECT = 30


@pytest.fixture(scope="session")
def _connection_counter(database_url: str) -> Iterator[Any]:
    """A connection of its own that counts the others to the test database (PostgreSQL only)."""
    if database_url.startswith("sqlite"):
        yield None
        return
    counter = _admin_connection(database_url)
    counter.autocommit = True
    yield counter
    counter.close()


@pytest.fixture(autouse=True)
def _release_abandoned_connections(_connection_counter: Any) -> Iterator[None]:
    """Tests build many apps, each with its own pool; one a test forgot to dispose holds its
    PostgreSQL connections until the garbage collector frees it. Free them when they pile up, so
    the suite never runs into the server's connection limit."""
    yield
    if _connection_counter is None:
        return
    # Every client connection to the server, not only to the test database: the limit is the
    # server's, and a test may hold connections to a database of its own.
    (open_connections,) = _connection_counter.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    ).fetchone()
    if open_connections <= _CONNECTIONS_BEFORE_COLLECT:
        return
    gc.collect()
    # What the collector cannot free (a pool a stray thread still holds) is closed from the server
    # side: only idle connections, never one inside a transaction. A pooled connection of a live
    # engine closed so is replaced at its next checkout (mdm.ground.db pings one whose socket has
    # something to read). Without this, CI runs sat at 50-60 idle connections between tests and a
    # test opening 30 at once met the server's limit of 100.
    # Each termination is waited for (up to 5 s): pg_terminate_backend only signals, and a pool
    # that checked the connection out before the backend had sent its FATAL saw a silent socket,
    # skipped the ping and failed the next test's first statement (a CI run: AdminShutdown in a
    # fixture's SET LOCAL). Once the backend has exited, its message is on the socket.
    _connection_counter.execute(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
        " WHERE datname = current_database() AND state = 'idle' AND pid <> pg_backend_pid()"
    )


@pytest.fixture(autouse=True)
def _builtin_ca_keys_from_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """The built-in CA's and signer's keys come from a per-run pool (tests/support/key_pool.py):
    real keys of the real sizes, distinct within a test, generated once per run, not per app."""
    from mdm.ground import ca
    from tests.support.key_pool import POOL

    POOL.new_test()
    monkeypatch.setattr(ca, "rsa", POOL.as_rsa_module())


@pytest.fixture(scope="session")
def _compiled_translations(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The console's catalogs compiled once per run (web.i18n compiles them into each app's
    instance folder when missing: a second per app)."""
    from web.i18n import SOURCE_DIR, compile_catalogs

    target = tmp_path_factory.mktemp("translations")
    compile_catalogs(SOURCE_DIR, target)
    return target


@pytest.fixture
def clean_database(engine: Engine) -> Engine:
    """Every table emptied, once per test, whichever fixtures ask for the database first."""
    _empty_all_tables(engine)
    return engine


@pytest.fixture
def session_factory(clean_database: Engine) -> sessionmaker[Session]:
    engine = clean_database
    # Deferred on SQLite, so a test holding a session open never blocks the server under test.
    factory = make_session_factory(read_mostly(engine))
    # The app's wiring without settings: what runs inside a transaction (hooks, inventory
    # settled, readiness recomputed); nothing is sent after commit, the test drives that.
    wire(factory, None, seal_in_background=False)  # PostgreSQL: events sealed as each commit ends
    return factory


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as s:
        yield s


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, clean_database: Engine, _compiled_translations: Path
) -> Settings:
    instance = tmp_path / "instance"
    instance.mkdir()
    # Already compiled (copied with their times, so the app finds them up to date).
    shutil.copytree(_compiled_translations, instance / "translations")
    return Settings(
        instance_path=instance,
        database_url=database_url,
        secret_key="test-secret-" + secrets.token_hex(8),
        public_url="https://mdm.test.invalid",
        # Test webhook receivers listen on loopback: allow-listed through the setting, as an
        # administrator would (tests/security/test_webhook_ssrf.py turns it off).
        webhook_allow_networks=("127.0.0.0/8", "::1/128"),
    )


class MovableClock:
    """A clock tests can move: starts at a fixed instant, advances only when told."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **kwargs: float) -> datetime:
        self.current += timedelta(**kwargs)
        return self.current


@pytest.fixture
def frozen_clock() -> Iterator[MovableClock]:
    moving = MovableClock(datetime(2026, 11, 23, 3, 0, tzinfo=UTC))
    clock.set_clock(moving)
    yield moving
    clock.set_clock(None)


@dataclass
class DeviceCA:
    cert: Any
    key: Any
    path: Path

    def issue_identity(self, name: str, **kwargs: Any) -> tuple[Any, Any]:
        from tests.support.pki import issue_cert, rsa_key

        return issue_cert(
            self.cert, self.key, name, key=kwargs.pop("key", rsa_key(f"device:{name}")), **kwargs
        )


@pytest.fixture
def device_ca(tmp_path: Path) -> DeviceCA:
    """An external device CA, trusted through Settings.device_ca_file."""
    from tests.support.pki import make_ca, write_pem

    cert, key = make_ca("Hikeshi Test Device CA")
    return DeviceCA(cert, key, write_pem(tmp_path / "device-ca.pem", cert))


@pytest.fixture
def app(settings: Settings, device_ca: DeviceCA) -> Iterator[Any]:
    from mdm import create_app

    application = create_app(replace(settings, device_ca_file=str(device_ca.path)))
    # Tests read what a request led to right after its answer: here the outbox's drain (compliance,
    # readiness: mdm.ground.outbox_drain) runs in the request's thread once its commit is in; a
    # server drains in the background (tests/protocol/test_statement_ceilings.py and
    # tests/faults/test_outbox_drain_kill.py run it so).
    application.extensions["hikeshi.wiring"].drainer.background = False
    yield application
    # A drain still running (a test that turned it to the background) ends before the next
    # test empties the tables.
    application.extensions["hikeshi.wiring"].close(30)
    application.extensions["hikeshi"].engine.dispose()


@pytest.fixture
def app_session(app: Any) -> Iterator[Session]:
    """A session of the app under test: its wiring posts the webhooks after commit (another
    app's sessions, the `session` fixture's included, are not heard). Deferred on SQLite, so the
    notifier's thread can write while the test holds it."""
    ext = app.extensions["hikeshi"]
    factory: sessionmaker[Session] = sessionmaker(
        read_mostly(ext.engine), class_=ext.session_factory.class_, expire_on_commit=False
    )
    with factory() as session:
        yield session


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def ipad(device_ca: DeviceCA) -> Any:
    """A supervised iPad holding an identity from the trusted device CA."""
    from tests.support.apple_device import SimulatedIPad

    cert, key = device_ca.issue_identity("ipad-1")
    return SimulatedIPad(cert, key)
