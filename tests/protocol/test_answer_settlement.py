"""An answer is settled by one guarded UPDATE (commands.results.record_result, issue 18): the
guards it replaced stay. A device answers only its own command (another device's command UUID
changes nothing of that command and is kept as an answer to a command Hikeshi never sent it), and
only once (a replayed answer adds no result and moves nothing). And a command is handed over by a
claim of the row the identity read found waiting (commands.delivery): one a device has answered
already is never handed over again."""

from __future__ import annotations

import plistlib

from sqlalchemy import func, select

from commands.queue import enqueue_command
from mdm.ground.models import AuditEvent, Command, CommandResult, CommandStatus, Device, ForeignCommandResult
from tests.protocol.test_apple_loop import ADMIN, _enroll, _skip_first_inventory, fresh
from tests.support.apple_device import SimulatedIPad


def _device(session, ipad) -> Device:
    return session.scalars(select(Device).where(Device.udid == ipad.udid)).one()


def test_another_devices_command_uuid_changes_nothing_of_that_command(client, ipad, device_ca, session):
    _enroll(client, ipad)
    cert, key = device_ca.issue_identity("ipad-other")
    other = SimulatedIPad(cert, key)
    _enroll(client, other)
    _skip_first_inventory(session)
    theirs = enqueue_command(session, _device(session, other), "DeviceLock", {}, actor=ADMIN)
    session.commit()
    assert plistlib.loads(other.connect(client, other.idle_body()).data)["CommandUUID"] == theirs.uuid

    # The first tablet names the other's command (sent, waiting for its answer).
    assert ipad.connect(client, ipad.result_body(theirs.uuid, "Acknowledged")).status_code == 200
    fresh(session)
    assert theirs.status == CommandStatus.SENT and theirs.acknowledged_at is None
    assert session.scalar(select(func.count()).select_from(CommandResult)) == 0
    [kept] = session.scalars(select(ForeignCommandResult)).all()
    assert kept.device_id == _device(session, ipad).id and kept.command_uuid == theirs.uuid


def test_a_replayed_answer_adds_nothing_and_moves_nothing(client, ipad, session):
    _enroll(client, ipad)
    _skip_first_inventory(session)
    lock = enqueue_command(session, _device(session, ipad), "DeviceLock", {}, actor=ADMIN)
    session.commit()
    assert plistlib.loads(ipad.connect(client, ipad.idle_body()).data)["CommandUUID"] == lock.uuid
    answer = ipad.result_body(lock.uuid, "Acknowledged")
    assert ipad.connect(client, answer).status_code == 200
    fresh(session)
    acknowledged_at = lock.acknowledged_at
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    assert lock.status == CommandStatus.ACKNOWLEDGED and acknowledged_at is not None

    # The same answer again (a retried connection), then an Error for the same command.
    assert ipad.connect(client, answer).status_code == 200
    assert ipad.connect(client, ipad.result_body(lock.uuid, "Error")).status_code == 200
    fresh(session)
    assert lock.status == CommandStatus.ACKNOWLEDGED and lock.acknowledged_at == acknowledged_at
    assert session.scalar(select(func.count()).select_from(CommandResult)) == 1
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events
    assert session.scalar(select(func.count()).select_from(ForeignCommandResult)) == 0


def test_the_answered_command_is_not_handed_over_again_but_the_next_one_is(client, ipad, session):
    _enroll(client, ipad)
    _skip_first_inventory(session)
    device = _device(session, ipad)
    first = enqueue_command(session, device, "DeviceLock", {}, actor=ADMIN)
    second = enqueue_command(session, device, "DeviceInformation", None, actor=ADMIN)
    session.commit()
    assert plistlib.loads(ipad.connect(client, ipad.idle_body()).data)["CommandUUID"] == first.uuid
    # Answering the first hands over the second in the same exchange, marked sent.
    handed = plistlib.loads(ipad.connect(client, ipad.result_body(first.uuid, "Acknowledged")).data)
    assert handed["CommandUUID"] == second.uuid
    fresh(session)
    assert first.status == CommandStatus.ACKNOWLEDGED
    assert second.status == CommandStatus.SENT and second.delivery_count == 1
    # Unanswered, it is handed over again at the next Idle (the device may have lost it).
    assert plistlib.loads(ipad.connect(client, ipad.idle_body()).data)["CommandUUID"] == second.uuid
    fresh(session)
    assert second.delivery_count == 2
    assert session.get(Command, first.id).delivery_count == 1  # type: ignore[union-attr]
