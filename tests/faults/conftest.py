"""Fixtures of the fault tests: a clock that can be moved from now, an app that pushes to the
APNs test server with an imported push certificate."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from mdm import create_app
from mdm.ground import clock
from mdm.ground.db import transaction
from mdm.ground.push.certificates import import_push_certificate, read_push_certificate
from tests.conftest import MovableClock
from tests.faults.harness import ADMIN


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
    conf = replace(
        settings,
        device_ca_file=str(device_ca.path),
        apns_url=apns_server.url,
        apns_ca_file=str(apns_server.ca_file),
    )
    app = create_app(conf)
    with transaction(app.extensions["hikeshi"].session_factory) as s:
        import_push_certificate(
            s, read_push_certificate(creds.cert_pem + creds.key_pem), secret_key=conf.secret_key, actor=ADMIN
        )
    app.topic = creds.topic
    yield app
    app.extensions["hikeshi"].dispatcher.close()
    app.extensions["hikeshi"].engine.dispose()
