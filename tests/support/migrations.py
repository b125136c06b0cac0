"""An old database for migration tests: SQLite migrated up to a given revision, as a server of
that release left it, with the Alembic config that moves it on."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine

from mdm.ground.db import alembic_config


@contextmanager
def database_at(revision: str) -> Iterator[tuple[Config, Engine]]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'old.db'}"
        cfg = alembic_config(url)
        command.upgrade(cfg, revision)
        engine = create_engine(url)
        try:
            yield cfg, engine
        finally:
            engine.dispose()
