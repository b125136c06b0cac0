"""Request-scoped access to the database session and settings for HTTP handlers.

Only the top layer (device endpoints, web console, API) uses this module; services receive
their Session as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app, g, request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from commands.context import CommandContext
from mdm.ground.config import Settings

if TYPE_CHECKING:
    from mdm.ground.push.dispatcher import PushDispatcher


@dataclass
class Hikeshi:
    """What the application factory wires together; stored as app.extensions["hikeshi"]."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    dispatcher: PushDispatcher
    # What commands need beyond the Session (settings, profile services), built by the wiring:
    # every door passes it on to what queues a command or records a result.
    commands: CommandContext


def hikeshi() -> Hikeshi:
    return current_app.extensions["hikeshi"]


def db_session() -> Session:
    """The request's session, opened on first use and closed (rolled back if uncommitted) at teardown."""
    if "db_session" not in g:
        g.db_session = hikeshi().session_factory()
    return g.db_session


def close_db_session(_exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def settings() -> Settings:
    return hikeshi().settings


def command_context() -> CommandContext:
    return hikeshi().commands


def client_ip() -> str | None:
    return request.remote_addr
