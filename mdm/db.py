"""Engine, sessions and migration state.

A service function takes the Session it works in and never commits; the boundary (request, CLI
command, scheduler job) owns the transaction. See DESIGN.md "Layers".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event below issue BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        # IMMEDIATE takes the write lock up front: a transaction that reads and then writes
        # (every audited change does) can never fail half-way on a stale WAL snapshot. A
        # read-mostly session opts out with `read_mostly(engine)`.
        if conn.get_execution_options().get("hikeshi_deferred"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def read_mostly(engine: Engine) -> Engine:
    """The same engine, but SQLite transactions start deferred: readers never block writers.

    A deferred transaction that writes after another writer committed fails on SQLite, so use
    it only where writes are rare and short (pages that read, test assertions).
    """
    return engine.execution_options(hikeshi_deferred=True)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work for a CLI command or a job: commit on success, roll back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def is_postgres(session_or_engine: Session | Engine) -> bool:
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "postgresql"


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_database(url: str, revision: str = "head") -> list[tuple[str, str]]:
    """Upgrade; returns the migrations applied, oldest first, as (revision, title)."""
    from alembic import command
    from alembic.script import ScriptDirectory

    config = alembic_config(url)
    engine = make_engine(url)
    try:
        before, _heads = migration_state(engine)
    finally:
        engine.dispose()
    command.upgrade(config, revision)
    script = ScriptDirectory.from_config(config)
    lower = next(iter(before)) if len(before) == 1 else "base"
    applied = list(script.iterate_revisions(revision, lower))
    return [(r.revision, (r.doc or "").strip().splitlines()[0] if r.doc else "") for r in reversed(applied)]


def migration_state(engine: Engine) -> tuple[set[str], set[str]]:
    """(revisions the database is at, head revisions of the code)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(engine.url.render_as_string(hide_password=False)))
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    return current, set(script.get_heads())


class DatabaseBehind(RuntimeError):
    """The database is behind the code's migrations."""


def ensure_migrated(engine: Engine) -> None:
    current, heads = migration_state(engine)
    if current != heads:
        at = ", ".join(sorted(current)) or "no migrations"
        raise DatabaseBehind(
            f"The database is at {at} but this version of Hikeshi needs {', '.join(sorted(heads))}. "
            "Run `hikeshi db upgrade` first."
        )
