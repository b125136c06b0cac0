"""An acknowledgement lost to a database outage (the device got a 503) leaves its command `sent`;
the re-push sweep wakes the device again, and it fetches, acknowledges and completes the command."""

from __future__ import annotations

import plistlib

from sqlalchemy import create_engine, select

from commands.queue import enqueue_command
from mdm.ground.db import transaction
from mdm.ground.models import Command, CommandStatus, Device
from mdm.roots.scheduler.jobs import JobContext, run_job
from tests.faults.harness import ADMIN, enroll_ipads, wait_for


def test_a_lost_acknowledgement_is_re_pushed_and_delivered(
    pushing_app, device_ca, apns_server, session_factory, moving_clock
):  # type: ignore[no-untyped-def]
    ext = pushing_app.extensions["hikeshi"]
    [ipad] = enroll_ipads(pushing_app, device_ca, pushing_app.topic, 1)
    with transaction(ext.session_factory) as s:
        device = s.scalars(select(Device)).one()
        uuid = enqueue_command(s, device, "DeviceLock", {}, actor=ADMIN).uuid
    wait_for(
        lambda: [p for p in apns_server.pushes_to(ipad.token_hex) if p.status == 200], 10, "the first push"
    )
    assert ext.dispatcher.wait_idle(10)
    pushes_before = len(apns_server.pushes_to(ipad.token_hex))

    client = pushing_app.test_client()
    fetched = plistlib.loads(ipad.connect(client, ipad.idle_body()).data)
    assert fetched["CommandUUID"] == uuid
    # The acknowledgement arrives while the database is unreachable: 503, nothing recorded.
    working = ext.session_factory.kw["bind"]
    broken = create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:9/none", connect_args={"connect_timeout": 1}
    )
    ext.session_factory.configure(bind=broken)
    try:
        assert ipad.connect(client, ipad.result_body(uuid)).status_code == 503
    finally:
        ext.session_factory.configure(bind=working)
        broken.dispose()
    with session_factory() as s:
        assert s.scalars(select(Command).where(Command.uuid == uuid)).one().status == CommandStatus.SENT

    # Nothing more happens before the re-push interval...
    ctx = JobContext(ext.session_factory, ext.settings, "test:1", ext.dispatcher)
    moving_clock.advance(minutes=ext.settings.push_repush_minutes - 1)
    assert run_job(ctx, "push_outbox").details["devices_repushed"] == 0
    # ...after it, the device is woken again (the push leaves right after the sweep's commit).
    moving_clock.advance(minutes=2)
    run = run_job(ctx, "push_outbox")
    assert run.outcome == "ok" and run.details["devices_repushed"] == 1
    wait_for(lambda: len(apns_server.pushes_to(ipad.token_hex)) > pushes_before, 10, "the re-push")
    assert apns_server.pushes_to(ipad.token_hex)[-1].status == 200

    # Woken, the device asks again, gets the same command, and this time its answer is kept.
    again = plistlib.loads(ipad.connect(client, ipad.idle_body()).data)
    assert again["CommandUUID"] == uuid
    assert ipad.connect(client, ipad.result_body(uuid)).status_code == 200
    with session_factory() as s:
        command = s.scalars(select(Command).where(Command.uuid == uuid)).one()
        assert command.status == CommandStatus.ACKNOWLEDGED
        assert (command.delivery_count, command.repushes) == (2, 1)
