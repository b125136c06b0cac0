"""Adding a command is one class (in one module) and a test: this test-only command is never added
to the application's catalog, only to one built here, and goes through the queue, the Apple
rendering, the Android rendering and its result with no other registration."""

from __future__ import annotations

import plistlib
from typing import Any

import pytest
from marshmallow import Schema, fields, validate
from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.catalog import CATALOG, Catalog, UnknownCommand, get_command_type
from commands.command_type import CommandType, PlatformEquivalent, Priority, Sender
from commands.context import CommandContext, DeliveryContext
from commands.delivery import next_command
from commands.queue import TwoPersonCommand, enqueue_command, refuse_direct
from commands.results import record_result
from mdm.doors.apple.plist_codec import encode_command
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import AuditEvent, Command, CommandStatus
from tests.support.factories import make_device
from web.rbac import Principal, Role, may_send, permissions_of

ADMIN = Actor("admin@hq", "admin", "192.0.2.10")


class ChimeParams(Schema):
    Volume = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=10))


class HikeshiTestChime(CommandType):
    request_type = "HikeshiTestChime"
    schema = ChimeParams
    description_ja = "テスト用の呼び出し音"
    description_en = "Test chime"
    priority = Priority.HIGH
    sent_by = Sender.HOTLINE
    android = PlatformEquivalent("LOCATE")

    def to_apple(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ChimeVolume": params["Volume"]}

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        record_event(
            session,
            Actor("device:test", "device"),
            "test.chimed",
            "command",
            command.uuid,
            {"heard": report.get("Heard"), "signing": context.settings is not None},
        )


@pytest.fixture
def catalog() -> Catalog:
    return CATALOG.with_kinds([HikeshiTestChime])


def test_a_new_command_class_round_trips_through_queue_rendering_and_result(session, catalog):
    device = make_device(session)
    command = enqueue_command(
        session, device, "HikeshiTestChime", {"Volume": 3}, actor=ADMIN, catalog=catalog
    )
    assert (command.priority, command.params) == (Priority.HIGH, {"Volume": 3})

    handed = next_command(session, device, offer_not_now=False)
    assert handed is not None and handed.uuid == command.uuid
    kind = catalog.get(handed.request_type)
    keys = kind.apple_command(dict(handed.params), DeliveryContext(device, "unused"))
    sent = plistlib.loads(encode_command(handed.uuid, handed.request_type, keys))
    assert sent["Command"] == {"RequestType": "HikeshiTestChime", "ChimeVolume": 3}

    report = {"UDID": device.udid, "CommandUUID": handed.uuid, "Status": "Acknowledged", "Heard": True}
    context = CommandContext()
    record_result(
        session, device, report, plistlib.dumps(report), actor=ADMIN, catalog=catalog, context=context
    )
    assert handed.status == CommandStatus.ACKNOWLEDGED
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "test.chimed")).one()
    assert (event.target_id, event.details) == (handed.uuid, {"heard": True, "signing": False})


def test_the_new_command_is_nowhere_else(session, catalog):
    """Nothing registered itself: the application's catalog does not know it, and its parameters
    are checked by its own schema, naming the field."""
    device = make_device(session)
    with pytest.raises(UnknownCommand):
        get_command_type("HikeshiTestChime")
    with pytest.raises(UnknownCommand):
        enqueue_command(session, device, "HikeshiTestChime", {"Volume": 3}, actor=ADMIN)
    with pytest.raises(ValueError, match="Volume"):
        enqueue_command(session, device, "HikeshiTestChime", {"Volume": 11}, actor=ADMIN, catalog=catalog)
    with pytest.raises(ValueError, match="twice"):
        catalog.with_kinds([HikeshiTestChime])


def test_the_class_says_its_android_equivalent_and_who_may_send_it(catalog):
    kind = catalog.get("HikeshiTestChime")
    assert kind.platforms == ("apple", "android")
    assert catalog.equivalent_for("HikeshiTestChime", "android") == kind.android
    assert catalog.in_menu_order()[: len(HOTLINE)] == [catalog.get(name) for name in HOTLINE]
    operator = Principal("user", 1, "op", Role.OPERATOR, permissions=permissions_of(Role.OPERATOR))
    auditor = Principal("user", 2, "au", Role.AUDITOR, permissions=permissions_of(Role.AUDITOR))
    assert may_send(operator, kind) and not may_send(auditor, kind)
    # Fleet commands need the administrator's right; two-person ones are sent by no route at all.
    assert not may_send(operator, catalog.get("RestartDevice"))
    admin = Principal("user", 3, "ad", Role.ADMIN, permissions=permissions_of(Role.ADMIN))
    assert not may_send(admin, catalog.get("EraseDevice"))
    with pytest.raises(TwoPersonCommand):
        refuse_direct(catalog.get("EraseDevice"))


HOTLINE = ("DeviceLock", "EnableLostMode", "DeviceLocation", "PlayLostModeSound", "DisableLostMode")
