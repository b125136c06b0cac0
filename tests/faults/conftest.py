"""Fixtures of the fault tests: a clock that can be moved from now, an app that pushes to the
APNs test server with an imported push certificate (tests.faults.harness.push_enabled_app)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from mdm.ground import clock
from tests.conftest import MovableClock
from tests.faults.harness import push_enabled_app


@pytest.fixture
def moving_clock() -> Iterator[MovableClock]:
    # Starts now: device certificates issued by the test CA are valid from now on.
    moving = MovableClock(datetime.now(UTC))
    clock.set_clock(moving)
    yield moving
    clock.set_clock(None)


@pytest.fixture
def pushing_app(settings, device_ca, apns_server):  # type: ignore[no-untyped-def]
    with push_enabled_app(settings, device_ca, apns_server) as app:
        yield app
