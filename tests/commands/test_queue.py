from __future__ import annotations

import plistlib

import pytest
from sqlalchemy import func, select

from commands.catalog import CommandParamsError, Priority, UnknownCommand, get_command_type
from commands.delivery import next_command
from commands.queue import CommandRefused, CommandStateError, cancel_command, enqueue_command, expire_overdue
from commands.results import record_result
from mdm.ground.audit import Actor
from mdm.ground.models import AuditEvent, Command, CommandResult, CommandStatus, EnrollmentState
from mdm.ground.push import take_pending_pushes
from tests.support.factories import make_device

ADMIN = Actor("admin@hq", "admin", "192.0.2.10")


def _report(command: Command, status: str, **extra: object) -> tuple[dict, bytes]:
    body = {"UDID": "x", "CommandUUID": command.uuid, "Status": status, **extra}
    return body, plistlib.dumps(body)


def test_lock_and_erase_jump_the_queue(session, frozen_clock):
    device = make_device(session)
    for _ in range(5):
        enqueue_command(session, device, "InstalledApplicationList", {}, actor=ADMIN)
        enqueue_command(session, device, "RestartDevice", {}, actor=ADMIN)
    erase = enqueue_command(session, device, "EraseDevice", {}, actor=ADMIN, wipe_approved=True)
    lock = enqueue_command(session, device, "DeviceLock", {"Message": "紛失中"}, actor=ADMIN)
    first = next_command(session, device, offer_not_now=True)
    assert first is not None and first.uuid == lock.uuid and first.status == CommandStatus.SENT
    record_result(session, device, *_report(first, "Acknowledged"), actor=ADMIN)
    second = next_command(session, device, offer_not_now=False)
    assert second is not None and second.uuid == erase.uuid


def test_fifo_within_a_priority(session):
    device = make_device(session)
    first = enqueue_command(session, device, "RestartDevice", {}, actor=ADMIN)
    enqueue_command(session, device, "RestartDevice", {}, actor=ADMIN)
    assert next_command(session, device, offer_not_now=True).uuid == first.uuid


def test_inventory_refresh_is_not_queued_twice(session):
    device = make_device(session)
    first = enqueue_command(session, device, "DeviceInformation", {}, actor=ADMIN)
    again = enqueue_command(session, device, "DeviceInformation", {}, actor=ADMIN)
    assert again.id == first.id
    assert session.scalar(select(func.count(Command.id))) == 1
    assert get_command_type("DeviceInformation").priority == Priority.LOW


def test_not_now_is_skipped_until_the_next_idle(session):
    device = make_device(session)
    a = enqueue_command(session, device, "RestartDevice", {}, actor=ADMIN)
    b = enqueue_command(session, device, "SecurityInfo", {}, actor=ADMIN, priority=0)
    got = next_command(session, device, offer_not_now=True)
    assert got.uuid == a.uuid
    record_result(session, device, *_report(a, "NotNow"), actor=ADMIN)
    assert a.status == CommandStatus.NOT_NOW
    got = next_command(session, device, offer_not_now=False)
    assert got.uuid == b.uuid
    record_result(session, device, *_report(b, "Acknowledged"), actor=ADMIN)
    assert next_command(session, device, offer_not_now=False) is None
    again = next_command(session, device, offer_not_now=True)
    assert again.uuid == a.uuid and again.delivery_count == 2


def test_repeated_acknowledgement_changes_nothing(session, frozen_clock):
    device = make_device(session)
    cmd = enqueue_command(session, device, "SecurityInfo", {}, actor=ADMIN)
    next_command(session, device, offer_not_now=True)
    record_result(session, device, *_report(cmd, "Acknowledged"), actor=ADMIN)
    acked_at = cmd.acknowledged_at
    events = session.scalar(select(func.count(AuditEvent.id)))
    frozen_clock.advance(minutes=5)
    record_result(session, device, *_report(cmd, "Acknowledged"), actor=ADMIN)
    record_result(session, device, *_report(cmd, "Error"), actor=ADMIN)
    assert cmd.status == CommandStatus.ACKNOWLEDGED and cmd.acknowledged_at == acked_at
    assert session.scalar(select(func.count(CommandResult.id))) == 1
    assert session.scalar(select(func.count(AuditEvent.id))) == events


def test_error_keeps_the_error_chain(session):
    device = make_device(session)
    cmd = enqueue_command(session, device, "RestartDevice", {}, actor=ADMIN)
    chain = [{"ErrorCode": 12021, "ErrorDomain": "MCMDMErrorDomain", "LocalizedDescription": "x"}]
    record_result(session, device, *_report(cmd, "Error", ErrorChain=chain), actor=ADMIN)
    assert cmd.status == CommandStatus.ERROR and cmd.error_chain == chain
    assert cmd.results[0].raw.startswith(b"<?xml")


def test_a_device_cannot_report_on_another_devices_command(session):
    mine, other = make_device(session), make_device(session)
    cmd = enqueue_command(session, other, "RestartDevice", {}, actor=ADMIN)
    assert record_result(session, mine, *_report(cmd, "Acknowledged"), actor=ADMIN) is None
    assert cmd.status == CommandStatus.QUEUED


def test_expired_commands_are_not_offered_but_lost_mode_style_commands_wait(session, frozen_clock):
    device = make_device(session)
    info = enqueue_command(session, device, "SecurityInfo", {}, actor=ADMIN)
    erase = enqueue_command(session, device, "EraseDevice", {}, actor=ADMIN, wipe_approved=True)
    assert erase.expires_at is None
    frozen_clock.advance(days=8)
    got = next_command(session, device, offer_not_now=True)
    assert got.uuid == erase.uuid
    got.status = CommandStatus.ACKNOWLEDGED
    # Never handed over: the delivery that meets it expires it (the sweep expires the others).
    assert next_command(session, device, offer_not_now=True) is None
    assert info.status == CommandStatus.EXPIRED and info.expired_at is not None


def test_the_expiry_sweep_expires_what_no_delivery_met(session, frozen_clock):
    device = make_device(session)
    info = enqueue_command(session, device, "SecurityInfo", {}, actor=ADMIN)
    lock = enqueue_command(session, device, "DeviceLock", {}, actor=ADMIN)
    frozen_clock.advance(days=8)
    assert next_command(session, device, offer_not_now=True).uuid == lock.uuid  # type: ignore[union-attr]
    assert info.status == CommandStatus.QUEUED  # not met: a lock jumps the queue
    assert expire_overdue(session) == 1
    session.refresh(info)
    assert info.status == CommandStatus.EXPIRED and info.expired_at is not None


def test_bad_parameters_name_the_field(session):
    device = make_device(session)
    with pytest.raises(CommandParamsError) as err:
        enqueue_command(session, device, "DeviceLock", {"PhoneNumber": "call me"}, actor=ADMIN)
    assert "PhoneNumber" in err.value.fields
    with pytest.raises(CommandParamsError) as err:
        enqueue_command(session, device, "SecurityInfo", {"Bogus": 1}, actor=ADMIN)
    assert "Bogus" in err.value.fields
    with pytest.raises(UnknownCommand):
        enqueue_command(session, device, "MakeCoffee", {}, actor=ADMIN)
    assert session.scalar(select(func.count(Command.id))) == 0


def test_refused_for_unsupervised_or_unenrolled_devices(session):
    unsupervised = make_device(session, supervised=False)
    with pytest.raises(CommandRefused):
        enqueue_command(session, unsupervised, "RestartDevice", {}, actor=ADMIN)
    gone = make_device(session, state=EnrollmentState.UNENROLLED)
    with pytest.raises(CommandRefused) as err:
        enqueue_command(session, gone, "DeviceLock", {}, actor=ADMIN)
    assert err.value.field == "device"


def test_cancel_only_while_queued(session):
    device = make_device(session)
    cmd = enqueue_command(session, device, "RestartDevice", {}, actor=ADMIN)
    cancel_command(session, cmd, actor=ADMIN)
    assert cmd.status == CommandStatus.CANCELLED
    assert next_command(session, device, offer_not_now=True) is None
    sent = enqueue_command(session, device, "SecurityInfo", {}, actor=ADMIN)
    next_command(session, device, offer_not_now=True)
    with pytest.raises(CommandStateError):
        cancel_command(session, sent, actor=ADMIN)


def test_queueing_audits_and_asks_for_a_push(session):
    device = make_device(session)
    cmd = enqueue_command(session, device, "DeviceLock", {"Message": "拾得された方は消防本部へ"}, actor=ADMIN)
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "command.queued")).one()
    assert event.target_id == cmd.uuid and event.actor == "admin@hq" and event.source_ip == "192.0.2.10"
    assert event.details["params"]["Message"] == "拾得された方は消防本部へ"
    assert take_pending_pushes(session) == {device.id}
