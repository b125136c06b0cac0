"""Pushes leave only after commit, over one HTTP/2 connection, to a real TLS server playing APNs;
their outcomes are recorded and never roll a command back."""

from __future__ import annotations

import plistlib
from dataclasses import replace

import pytest
from sqlalchemy import select

from commands.queue import cancel_command, enqueue_command, pending_commands
from mdm import create_app
from mdm.ground.audit import Actor
from mdm.ground.db import transaction
from mdm.ground.models import AuditEvent, Command, CommandStatus, Device, PushAttempt
from mdm.ground.push.certificates import import_push_certificate, read_push_certificate
from tests.support.apple_device import SimulatedIPad

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")


@pytest.fixture
def push_topic(apns_server):
    return apns_server.issue_client_credentials()


@pytest.fixture
def pushing_app(settings, device_ca, apns_server, push_topic):
    conf = replace(
        settings,
        device_ca_file=str(device_ca.path),
        apns_url=apns_server.url,
        apns_ca_file=str(apns_server.ca_file),
    )
    application = create_app(conf)
    factory = application.extensions["hikeshi"].session_factory
    with transaction(factory) as s:
        loaded = read_push_certificate(push_topic.cert_pem + push_topic.key_pem)
        import_push_certificate(s, loaded, secret_key=conf.secret_key, actor=ADMIN)
    yield application
    application.extensions["hikeshi"].dispatcher.close()
    application.extensions["hikeshi"].engine.dispose()


def _enrolled_ipad(app, device_ca, topic: str, name: str = "ipad-1") -> SimulatedIPad:
    cert, key = device_ca.issue_identity(name)
    ipad = SimulatedIPad(cert, key, topic=topic)
    client = app.test_client()
    assert ipad.checkin(client, ipad.authenticate_body()).status_code == 200
    assert ipad.checkin(client, ipad.token_update_body()).status_code == 200
    # Enrollment queued the first inventory (commands.inventory_refresh); these tests follow other commands.
    with transaction(app.extensions["hikeshi"].session_factory) as s:
        device = s.scalars(select(Device).where(Device.udid == ipad.udid)).one()
        for command in pending_commands(s, device):
            cancel_command(s, command, actor=ADMIN)
    return ipad


def _queue(app, udid: str, request_type: str, params=None) -> str:
    with transaction(app.extensions["hikeshi"].session_factory) as s:
        device = s.scalars(select(Device).where(Device.udid == udid)).one()
        return enqueue_command(s, device, request_type, params or {}, actor=ADMIN).uuid


def test_lock_is_pushed_after_commit_and_fetched(pushing_app, device_ca, apns_server, push_topic, session):
    ipad = _enrolled_ipad(pushing_app, device_ca, push_topic.topic)
    uuid = _queue(pushing_app, ipad.udid, "DeviceLock", {"Message": "紛失端末です"})
    [push] = apns_server.wait_for_pushes(1, timeout=10)
    assert push.token == ipad.token_hex
    assert push.payload == {"mdm": ipad.push_magic}
    assert (push.topic, push.push_type, push.priority) == (push_topic.topic, "mdm", "10")
    assert push.expiration is not None and int(push.expiration) > 0
    assert push.client_uid == push_topic.topic
    assert pushing_app.extensions["hikeshi"].dispatcher.wait_idle(10)

    client = pushing_app.test_client()
    command = plistlib.loads(ipad.connect(client, ipad.idle_body()).data)
    assert command["CommandUUID"] == uuid and command["Command"]["RequestType"] == "DeviceLock"
    ipad.connect(client, ipad.result_body(uuid, "Acknowledged"))
    cmd = session.scalars(select(Command).where(Command.uuid == uuid)).one()
    assert cmd.status == CommandStatus.ACKNOWLEDGED
    assert cmd.queued_at <= cmd.pushed_at <= cmd.sent_at <= cmd.acknowledged_at
    attempt = session.scalars(select(PushAttempt)).one()
    assert attempt.status_code == 200 and attempt.apns_id


def test_nothing_is_pushed_when_the_transaction_rolls_back(pushing_app, device_ca, apns_server, push_topic):
    ipad = _enrolled_ipad(pushing_app, device_ca, push_topic.topic)
    factory = pushing_app.extensions["hikeshi"].session_factory
    with pytest.raises(RuntimeError), transaction(factory) as s:
        device = s.scalars(select(Device).where(Device.udid == ipad.udid)).one()
        enqueue_command(s, device, "DeviceLock", {}, actor=ADMIN)
        raise RuntimeError("something failed after queueing")
    assert pushing_app.extensions["hikeshi"].dispatcher.wait_idle(5)
    assert apns_server.pushes == []
    with factory() as s:
        assert s.scalars(select(Command).where(Command.request_type == "DeviceLock")).all() == []


def test_pushes_to_many_devices_share_one_connection(
    pushing_app, device_ca, apns_server, push_topic, session
):
    ipads = [_enrolled_ipad(pushing_app, device_ca, push_topic.topic, f"ipad-{n}") for n in range(40)]
    with transaction(pushing_app.extensions["hikeshi"].session_factory) as s:
        for device in s.scalars(select(Device)):
            enqueue_command(s, device, "SecurityInfo", {}, actor=ADMIN)
    pushes = apns_server.wait_for_pushes(40, timeout=20)
    assert {p.token for p in pushes} == {i.token_hex for i in ipads}
    assert apns_server.tcp_connection_count == 1
    assert pushing_app.extensions["hikeshi"].dispatcher.wait_idle(10)
    assert all(
        c.pushed_at is not None for c in session.scalars(select(Command).where(Command.status != "cancelled"))
    )


@pytest.mark.parametrize(
    ("status", "reason", "expect_error", "stale"),
    [(410, "Unregistered", "410 Unregistered", True), (400, "BadDeviceToken", "400 BadDeviceToken", False)],
)
def test_refused_token_is_recorded_and_the_command_waits(
    pushing_app, device_ca, apns_server, push_topic, session, status, reason, expect_error, stale
):
    ipad = _enrolled_ipad(pushing_app, device_ca, push_topic.topic)
    apns_server.respond(ipad.token_hex, status, reason)
    uuid = _queue(pushing_app, ipad.udid, "DeviceLock")
    apns_server.wait_for_pushes(1, timeout=10)
    assert pushing_app.extensions["hikeshi"].dispatcher.wait_idle(10)
    device = session.scalars(select(Device)).one()
    assert device.push_error == expect_error
    assert (device.token_stale_at is not None) is stale
    cmd = session.scalars(select(Command).where(Command.uuid == uuid)).one()
    assert cmd.status == CommandStatus.QUEUED and cmd.pushed_at is None
    # The device still gets it when it checks in by itself.
    fetched = plistlib.loads(ipad.connect(pushing_app.test_client(), ipad.idle_body()).data)
    assert fetched["CommandUUID"] == uuid


def test_rejected_certificate_raises_an_operator_alert(
    pushing_app, device_ca, apns_server, push_topic, session
):
    ipad = _enrolled_ipad(pushing_app, device_ca, push_topic.topic)
    apns_server.respond(ipad.token_hex, 403, "BadCertificate")
    _queue(pushing_app, ipad.udid, "SecurityInfo")
    apns_server.wait_for_pushes(1, timeout=10)
    assert pushing_app.extensions["hikeshi"].dispatcher.wait_idle(10)
    assert len(apns_server.pushes) == 1  # 403 is not retried
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "push_certificate.rejected")).one()
    assert event.details["reason"] == "BadCertificate"
    from mdm.ground.push.certificates import active_push_certificate

    assert "BadCertificate" in (active_push_certificate(session).last_error or "")


def test_server_errors_are_retried(pushing_app, device_ca, apns_server, push_topic, session):
    ipad = _enrolled_ipad(pushing_app, device_ca, push_topic.topic)
    apns_server.set_outage(503, count=2)
    _queue(pushing_app, ipad.udid, "SecurityInfo")
    apns_server.wait_for_pushes(3, timeout=20)
    assert pushing_app.extensions["hikeshi"].dispatcher.wait_idle(20)
    attempt = session.scalars(select(PushAttempt)).one()
    assert attempt.status_code == 200 and attempt.attempt == 3


def test_an_older_failure_does_not_overwrite_a_newer_success(
    pushing_app, device_ca, apns_server, push_topic, session
):
    """Two workers push to one device while APNs recovers: the one that set out during the outage
    records its 503 after the other recorded its 200. The device was reached; it keeps no error."""
    from datetime import timedelta

    from mdm.ground import clock
    from mdm.ground.push.apns import PushOutcome
    from mdm.ground.push.dispatcher import _Target

    ipad = _enrolled_ipad(pushing_app, device_ca, push_topic.topic)
    dispatcher = pushing_app.extensions["hikeshi"].dispatcher
    device = session.scalars(select(Device)).one()
    set_out_during_outage = clock.now() - timedelta(seconds=5)
    [reached] = dispatcher.push_now([device.id])
    assert reached.delivered
    late_failure = PushOutcome(ipad.token_hex, 503, "ServiceUnavailable", None, 3)
    target = _Target(device.id, ipad.token_hex, ipad.push_magic)
    dispatcher._record([target], [late_failure], set_out_during_outage, timedelta(seconds=30))
    session.rollback()  # a new snapshot: the dispatcher wrote in its own
    assert session.get(Device, device.id).push_error is None
    # A failure that set out after the last success still marks the device.
    dispatcher._record([target], [late_failure], clock.now(), timedelta(seconds=30))
    session.rollback()  # a new snapshot: the dispatcher wrote in its own
    assert session.get(Device, device.id).push_error == "503 ServiceUnavailable"
    attempts = session.scalars(select(PushAttempt).order_by(PushAttempt.id))
    assert [a.status_code for a in attempts] == [200, 503, 503]
