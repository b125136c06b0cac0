"""One line for each way a CLI command fails because of its surroundings, not a traceback.

A command that cannot reach its database, is given a refused setting or cannot use its instance
folder says what is wrong and what to do; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from mdm.ground.transport import TransportError


def _database(context: Any) -> str:
    try:
        url = make_url(context.settings.database_url)
    except Exception:
        return "the database"
    if url.get_backend_name() == "sqlite":
        return f"the SQLite database {url.database}"
    return f"the database {url.database or '?'} on {url.host or 'localhost'}:{url.port or 5432}"


def _backend(context: Any) -> str | None:
    try:
        return str(make_url(context.settings.database_url).get_backend_name())
    except Exception:
        return None


def _first_line(exc: BaseException) -> str:
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip().splitlines()
    return text[0][:300] if text else type(inner).__name__


def explain(exc: Exception, context: Any) -> str | None:
    """The one line for `exc`, or None when it is not a failure of the surroundings."""
    if isinstance(exc, TransportError):
        return str(exc)
    if isinstance(exc, (ArgumentError, NoSuchModuleError)):
        return f"HIKESHI_DATABASE_URL is not a usable database URL ({_first_line(exc)}); see the README"
    backend = _backend(context)
    if isinstance(exc, ModuleNotFoundError) and backend not in (None, "sqlite", "postgresql"):
        # SQLAlchemy knows the dialect (mysql, oracle...) but its driver is not installed: the
        # database is one Hikeshi does not run on, whatever the driver.
        return (
            f"HIKESHI_DATABASE_URL names a {backend} database; Hikeshi runs on SQLite "
            "(sqlite:///PATH) or PostgreSQL (postgresql+psycopg://USER@HOST/DB)"
        )
    if isinstance(exc, (OperationalError, DBAPIError)) and _is_connection_failure(exc):
        where = _database(context) if context is not None else "the database"
        reason = _first_line(exc)
        if "does not exist" in reason:
            hint = "create it (for PostgreSQL: createdb) or correct HIKESHI_DATABASE_URL"
        elif "unable to open database file" in reason:
            hint = "check that its folder exists and is writable, or correct HIKESHI_DATABASE_URL"
        elif "password authentication failed" in reason or "authentication" in reason:
            hint = "check the user and password in HIKESHI_DATABASE_URL"
        else:
            hint = "check that the database server is running and HIKESHI_DATABASE_URL points at it"
        return f"cannot use {where}: {reason} — {hint}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc} — check HIKESHI_INSTANCE_PATH and its owner"
    if isinstance(exc, ValueError) and str(exc).startswith("HIKESHI_"):
        return str(exc)  # a setting with a bad value (mdm.ground.config)
    return None


def _is_connection_failure(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    text = str(getattr(exc, "orig", exc)).lower()
    return any(
        marker in text
        for marker in (
            "connection",
            "could not connect",
            "does not exist",
            "unable to open database file",
            "authentication failed",
            "server closed",
            "timeout expired",
            "no route to host",
            "name or service not known",
        )
    )
