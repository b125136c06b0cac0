"""Engine, sessions and migration state.

A service function takes the Session it works in and never commits; the boundary (request, CLI
command, scheduler job) owns the transaction. See DESIGN.md "Layers".
"""

from __future__ import annotations

import functools
import os
import select
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, Engine, create_engine, event, literal, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database if parsed.database and parsed.database != ":memory:" else None
        if database is not None:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            keep_private(Path(database), create=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _configure_sqlite(engine, Path(database) if database is not None else None)
        return engine
    engine = create_engine(url, pool_size=10, max_overflow=20)
    _ping_connections_the_server_closed(engine)
    return engine


def _ping_connections_the_server_closed(engine: Engine) -> None:
    """A pooled connection is pinged before use only when its socket has something to read.

    An idle connection's socket is silent; one the server closed (a restart, pg_terminate_backend,
    idle_session_timeout) has the server's FATAL message or the end of the stream waiting. So the
    ping, a round trip that was about a sixth of a device check-in's CPU when done on every
    checkout (pool_pre_ping), is paid only where it finds something out. A connection found dead is
    replaced before the request sees it, as pool_pre_ping did."""

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, _record: object, _proxy: object) -> None:
        if dbapi_connection.closed:
            raise DisconnectionError("the pooled connection is closed")
        try:
            readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
        except (OSError, ValueError) as exc:
            raise DisconnectionError("the pooled connection's socket is gone") from exc
        if not readable:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError("the server closed the pooled connection") from exc


# SQLite's side files: the write-ahead log, its index, and a rollback journal.
SIDE_SUFFIXES = ("-wal", "-shm", "-journal")


def keep_private(database: Path, *, create: bool = False) -> None:
    """The SQLite file and its side files readable by the owner only (0600).

    The database holds sealed secrets, password hashes and the audit trail; the instance folder is
    0700, but a copy or a looser folder must not widen that. SQLite gives its side files the mode
    of the main file, so a new main file is created 0600 before SQLite opens it (`create`), and
    every file is tightened again on each connection (a file made by an older version, or copied
    in). An existing database is never opened here: closing any descriptor of a file drops every
    POSIX lock this process holds on it, SQLite's included."""
    if create and not database.exists():
        try:
            os.close(os.open(database, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError:
            pass  # created meanwhile, or not creatable: SQLite reports that better than we would
    for path in (database, *(Path(f"{database}{suffix}") for suffix in SIDE_SUFFIXES)):
        try:
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
        except OSError:
            continue  # a side file that does not exist (yet) or is not ours


def _configure_sqlite(engine: Engine, database: Path | None) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: object) -> None:  # the driver's own connection
        # Let SQLAlchemy's "begin" event below issue BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
        if database is not None:
            keep_private(database)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
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
def transaction(factory: sessionmaker[Session], *, writes: bool = False) -> Iterator[Session]:
    """A unit of work for a CLI command or a job: commit on success, roll back on error.

    `writes`: the work reads and then writes, so on SQLite it takes the write lock at BEGIN even
    when `factory` is read-mostly; a deferred one would fail its first write ("database is
    locked") whenever another connection committed after its first read.
    """
    session = factory()
    try:
        if writes:
            session.connection(execution_options={"hikeshi_deferred": False})
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def insert_if_absent(
    session: Session, model: type[Any], values: dict[str, Any] | list[dict[str, Any]]
) -> None:
    """Insert a row unless one with the same primary key exists (INSERT ... ON CONFLICT DO NOTHING);
    a list of rows is inserted in one batched statement.

    Two transactions creating the same first row (two evaluations of one device, two workers
    recording APNs health) both succeed; the caller then reads the row with a row lock and updates it.
    """
    from sqlalchemy.dialects import postgresql, sqlite

    dialect: Any = postgresql if is_postgres(session) else sqlite
    if isinstance(values, list):
        if values:
            session.execute(dialect.insert(model).on_conflict_do_nothing(), values)
        return
    session.execute(dialect.insert(model).values(**values).on_conflict_do_nothing())


def update_rows(session: Session, model: type[Any], rows: Sequence[Mapping[str, Any]]) -> None:
    """Write each row's columns to the row with its primary key (every row names the same
    columns, the key among them; scalar columns only). PostgreSQL gets one statement whatever the
    number of rows: an UPDATE ... FROM unnest of one array per column, where the ORM's batched
    UPDATE is one statement a row on the server. SQLite gets the ORM's bulk update by primary key.
    The ORM objects of these rows, if any, are the caller's to keep in step (set_committed_value)."""
    if not rows:
        return
    if not is_postgres(session):
        session.execute(update(model), [dict(row) for row in rows])
        return
    table = model.__table__
    dialect = session.get_bind().dialect
    quote = dialect.identifier_preparer.quote
    # Every name is the table's own column (a KeyError otherwise), quoted: nothing else is spliced.
    columns = [table.c[name] for name in rows[0]]
    [key] = [quote(column.name) for column in table.primary_key.columns]
    names = [quote(column.name) for column in columns]
    arrays = ", ".join(
        f"CAST(:v{i} AS {column.type.compile(dialect=dialect)}[])" for i, column in enumerate(columns)
    )
    assignments = ", ".join(f"{name} = v.{name}" for name in names if name != key)
    statement = (
        f"UPDATE {quote(table.name)} AS t SET {assignments}"  # noqa: S608 (identifiers from the model, quoted)
        f" FROM unnest({arrays}) AS v({', '.join(names)}) WHERE t.{key} = v.{key}"
    )
    session.execute(
        text(statement),
        {f"v{i}": [row[column.name] for row in rows] for i, column in enumerate(columns)},
    )


def one_of(column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN (...)` over a fixed set of values, each bound on its own. What `in_` makes of a
    list is an expanding parameter: its statement is rendered again at every execution, which on a
    device request's hot path cost more CPU than the statement's own run (issue 18)."""
    return column.in_([literal(value, column.type) for value in values])


def is_postgres(session_or_engine: Session | Engine) -> bool:
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "postgresql"


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_database(
    url: str, revision: str = "head", *, secret_key: str | None = None
) -> list[tuple[str, str]]:
    """Apply migrations up to `revision`; returns the migrations applied, oldest first, as
    (revision, title). Data migrations that seal secrets already stored in clear (0008) need the
    instance secret: `hikeshi db upgrade` passes it."""
    from alembic import command
    from alembic.script import ScriptDirectory

    config = alembic_config(url)
    config.attributes["secret_key"] = secret_key
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

    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    return current, set(code_heads())


@functools.cache
def code_heads() -> frozenset[str]:
    """The head revisions of the code's migrations, read once a process: loading every migration
    script took a tenth of each application's start, and the scripts do not change under it."""
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(alembic_config("")).get_heads())


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
