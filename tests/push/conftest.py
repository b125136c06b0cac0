"""Fixtures shared by the push tests."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from commands.catalog import get_command_type
from mdm.ground.db import make_session_factory
from mdm.roots.wiring import wire


@pytest.fixture
def android_request_type() -> str:
    """A command the queue accepts for Android devices."""
    assert "android" in get_command_type("DeviceLock").platforms
    return "DeviceLock"


@pytest.fixture
def writer_factory(clean_database: Engine) -> sessionmaker[Session]:
    """Sessions as the server makes them (SQLite: BEGIN IMMEDIATE), for tests where the push
    thread writes (health) while the test queues commands: a deferred writer would fail there."""
    factory = make_session_factory(clean_database)
    wire(factory, None)  # the in-transaction wiring; the test installs its own dispatcher
    return factory
