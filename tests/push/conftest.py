"""Fixtures shared by the push tests."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from commands.catalog import CommandType, all_command_types
from mdm.ground.db import make_session_factory
from mdm.roots.wiring import wire


@pytest.fixture
def android_request_type(monkeypatch: pytest.MonkeyPatch) -> str:
    """A command the queue accepts for Android devices: DeviceLock once the Android kinds declare
    it (commands.kinds.android), otherwise a test-only kind for this test."""
    kinds = {kind.request_type: kind for kind in all_command_types()}
    lock = kinds.get("DeviceLock")
    if lock is not None and "android" in lock.platforms:
        return "DeviceLock"
    from commands import command_type
    from commands.kinds.security import DeviceLockParams

    kind = CommandType("HikeshiTestWake", DeviceLockParams, "テスト", "test", platforms=("android",))
    monkeypatch.setitem(command_type._CATALOG, kind.request_type, kind)
    return kind.request_type


@pytest.fixture
def writer_factory(clean_database: Engine) -> sessionmaker[Session]:
    """Sessions as the server makes them (SQLite: BEGIN IMMEDIATE), for tests where the push
    thread writes (health) while the test queues commands: a deferred writer would fail there."""
    factory = make_session_factory(clean_database)
    wire(factory, None)  # the in-transaction wiring; the test installs its own dispatcher
    return factory
