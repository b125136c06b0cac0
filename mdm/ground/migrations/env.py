"""Alembic environment: the same migrations run on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from sqlalchemy import DateTime

from mdm.ground.db import make_engine
from mdm.ground.models import Base
from mdm.ground.models.base import UTCDateTime

config = context.config
target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    # Store UTCDateTime as a plain timezone-aware DateTime so migrations need no app import.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def compare_type(context_: Any, inspected: Any, metadata_col: Any, inspected_type: Any, metadata_type: Any):
    if isinstance(metadata_type, UTCDateTime) and isinstance(inspected_type, DateTime):
        return False
    return None


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # Batch migrations rebuild a SQLite table by dropping it; with foreign keys on,
                # that drop deletes (or refuses to delete) every row that refers to it. The
                # pragma only takes effect outside a transaction, so it goes to the driver first.
                _sqlite_pragma(connection, "PRAGMA foreign_keys=OFF")
            try:
                _run(connection)
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration left rows that refer to nothing: {broken[:5]}")
                connection.commit()
            finally:
                if sqlite:
                    connection.rollback()
                    _sqlite_pragma(connection, "PRAGMA foreign_keys=ON")
    finally:
        engine.dispose()


def _sqlite_pragma(connection: Any, pragma: str) -> None:
    connection.connection.dbapi_connection.execute(pragma)


def _run(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        render_item=render_item,
        compare_type=compare_type,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
