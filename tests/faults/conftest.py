"""Fixtures of the fault tests: a clock that can be moved from now, an app that pushes to the
APNs test server with an imported push certificate."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from mdm import create_app
from mdm.ground import clock
from tests.conftest import MovableClock
from tests.faults.harness import import_push_identity, pushing_settings


@pytest.fixture
def moving_clock() -> Iterator[MovableClock]:
    # Starts now: device certificates issued by the test CA are valid from now on.
    moving = MovableClock(datetime.now(UTC))
    clock.set_clock(moving)
    yield moving
    clock.set_clock(None)


@pytest.fixture
def pushing_app(settings, device_ca, apns_server):  # type: ignore[no-untyped-def]
    creds = apns_server.issue_client_credentials()
    conf = pushing_settings(settings, device_ca, apns_server)
    app = create_app(conf)
    import_push_identity(app.extensions["hikeshi"].session_factory, conf, creds)
    app.topic = creds.topic
    yield app
    app.extensions["hikeshi"].dispatcher.close()
    app.extensions["hikeshi"].engine.dispose()
