"""Recording push outcomes is set-based: the SQL statements that record a batch of N outcomes (and
the whole push of N devices) do not grow with N (issue 23, item 4: outcomes recorded in bulk)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import event, func, select

from mdm import create_app
from mdm.ground import clock
from mdm.ground.audit import SYSTEM
from mdm.ground.db import transaction
from mdm.ground.models import Command, CommandStatus, Device, EnrollmentState, OutboxTopic, PushAttempt
from mdm.ground.push import outbox
from mdm.ground.push.certificates import import_push_certificate, read_push_certificate
from tests.support.apns_server import ApnsTestServer

# Background threads of the app that write on their own schedule, not because of a push.
_UNRELATED_THREADS = ("hikeshi-audit-sealer", "hikeshi-readiness-webhooks")


@pytest.fixture
def hikeshi(settings, apns_server: ApnsTestServer) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    credentials = apns_server.issue_client_credentials()
    conf = replace(settings, apns_url=apns_server.url, apns_ca_file=str(apns_server.ca_file))
    app = create_app(conf)
    extension = app.extensions["hikeshi"]
    with transaction(extension.session_factory) as s:
        loaded = read_push_certificate(credentials.cert_pem + credentials.key_pem)
        import_push_certificate(s, loaded, secret_key=conf.secret_key, actor=SYSTEM)
    extension.topic = credentials.topic
    yield extension
    extension.dispatcher.close()
    extension.engine.dispose()


def _devices_with_commands(hikeshi: Any, count: int) -> list[Device]:
    """Enrolled iPads, each with a queued command and a push request waiting in the outbox (as
    commands.queue leaves them)."""
    now = clock.now()
    with transaction(hikeshi.session_factory) as s:
        devices = [
            Device(
                udid=str(uuid.uuid4()).upper(),
                serial_number=f"REC{uuid.uuid4().hex[:9].upper()}",
                platform="apple",
                is_supervised=True,
                enrollment_state=EnrollmentState.ENROLLED,
                push_token=uuid.uuid4().hex * 2,
                push_magic=str(uuid.uuid4()).upper(),
                topic=hikeshi.topic,
                created_at=now,
                enrolled_at=now,
            )
            for _ in range(count)
        ]
        s.add_all(devices)
        s.flush()
        s.add_all(
            Command(
                uuid=str(uuid.uuid4()).upper(),
                device_id=d.id,
                request_type="DeviceInformation",
                params={},
                priority=0,
                status=CommandStatus.QUEUED,
                requested_by="test",
                queued_at=now,
            )
            for d in devices
        )
        outbox.request(s, OutboxTopic.WAKE_DEVICE, [d.id for d in devices])
        s.expunge_all()
    return devices


def _statements_to_push(hikeshi: Any, apns_server: ApnsTestServer, count: int) -> tuple[int, list[Device]]:
    """Push `count` devices (a third delivered, a third 410 Unregistered, a third BadDeviceToken);
    return the statements the push ran and the devices."""
    devices = _devices_with_commands(hikeshi, count)
    for n, device in enumerate(devices):
        if n % 3 == 1:
            apns_server.respond(device.push_token, 410)
        elif n % 3 == 2:
            apns_server.respond(device.push_token, 400, "BadDeviceToken")
    statements: list[str] = []

    def count_statement(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if threading.current_thread().name not in _UNRELATED_THREADS:
            statements.append(statement)

    event.listen(hikeshi.engine, "before_cursor_execute", count_statement)
    try:
        outcomes = hikeshi.dispatcher.push_now([d.id for d in devices], timeout=60)
    finally:
        event.remove(hikeshi.engine, "before_cursor_execute", count_statement)
    assert sorted(o.status for o in outcomes) == sorted([200, 410, 400][n % 3] for n in range(count))
    return len(statements), devices


def test_recording_outcomes_takes_the_same_statements_for_3_or_45_devices(
    hikeshi: Any, apns_server: ApnsTestServer
) -> None:
    _statements_to_push(hikeshi, apns_server, 3)  # warm-up: first health row, connection opened
    few, _ = _statements_to_push(hikeshi, apns_server, 3)
    many, devices = _statements_to_push(hikeshi, apns_server, 45)

    assert many == few, f"{few} statements for 3 devices, {many} for 45: recording grows with the batch"
    assert many <= 20
    # And what was recorded is what happened, for every device.
    ids = [d.id for d in devices]
    with hikeshi.session_factory() as s:
        attempts = s.scalar(select(func.count()).where(PushAttempt.device_id.in_(ids)))
        rows = {d.id: d for d in s.scalars(select(Device).where(Device.id.in_(ids)))}
        commands = s.scalars(select(Command).where(Command.device_id.in_(ids)))
        pushed = {c.device_id: c.pushed_at for c in commands}
        waiting = {e.subject_id for e in outbox.waiting(s, OutboxTopic.WAKE_DEVICE)}
    assert attempts == 45
    for n, device in enumerate(devices):
        row = rows[device.id]
        if n % 3 == 0:
            assert row.push_error is None and pushed[device.id] is not None
        elif n % 3 == 1:
            assert row.push_error == "410 Unregistered" and row.token_stale_at is not None
        else:
            assert row.push_error == "400 BadDeviceToken" and row.token_stale_at is None
        if n % 3:
            assert pushed[device.id] is None
    assert waiting.isdisjoint(ids)  # delivered: settled; refused tokens: nothing more to try
