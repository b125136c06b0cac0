"""Pooled PostgreSQL connections (mdm.ground.db.make_engine): a healthy one is handed out without
a round trip, and one the server closed is replaced before a request sees it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from mdm.ground.db import make_engine


@pytest.fixture
def pooled(database_url: str) -> Iterator[Engine]:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has no server to close a connection")
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def _pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every ping SQLAlchemy's dialect sends from now on."""
    seen: list[Any] = []
    original = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        seen.append(dbapi_connection)
        return bool(original(dbapi_connection))

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return seen


def _backend(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(database_url: str, pid: int) -> None:
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))


def test_a_healthy_pooled_connection_is_reused_without_a_ping(
    pooled: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _backend(pooled)
    pings = _pings(pooled, monkeypatch)
    for _ in range(5):
        assert _backend(pooled) == first  # the same connection, back from the pool
    assert pings == []


def test_a_connection_the_server_closed_is_replaced_before_use(
    pooled: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _backend(pooled)
    _terminate(database_url, first)
    pings = _pings(pooled, monkeypatch)
    # The request after the restart of its backend works, on a new connection: no error reaches it.
    second = _backend(pooled)
    assert second != first
    assert len(pings) == 1
    assert _backend(pooled) == second
    assert len(pings) == 1
