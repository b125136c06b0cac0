"""What the incident page says the finder sees: only what the tablet acknowledged, with the text
exactly as sent in that command; unknown while it has not answered (issue #19 item 1)."""

from __future__ import annotations

import commands.incidents as hotline
from commands.incidents.finder_screen import FinderState, finder_screen
from commands.incidents.lock_text import DEFAULT_LOCK_MESSAGE, lock_text_for, set_unit_lock_text
from mdm.ground import clock
from mdm.ground.audit import SYSTEM, Actor
from mdm.ground.models import CommandStatus
from mdm.services.orgunits import assign_device, create_unit
from tests.support.factories import make_device

OPERATOR = Actor("user:tanaka", "operator", "192.0.2.10", user_id=7)


def _answer(command, status=CommandStatus.ACKNOWLEDGED, message_result=None):
    command.status = status
    command.acknowledged_at = clock.now() if status == CommandStatus.ACKNOWLEDGED else None
    command.error_at = clock.now() if status == CommandStatus.ERROR else None
    command.message_result = message_result


def test_the_station_text_is_inherited_field_by_field(session):
    hq = create_unit(session, {"kind": "hq", "name_ja": "本部"}, actor=SYSTEM)
    station = create_unit(session, {"kind": "station", "name_ja": "中央署", "parent_id": hq.id}, actor=SYSTEM)
    unit = create_unit(
        session,
        {"kind": "unit", "name_ja": "救急1", "unit_type": "ambulance", "parent_id": station.id},
        actor=SYSTEM,
    )
    assert lock_text_for(session, unit).message == DEFAULT_LOCK_MESSAGE
    assert lock_text_for(session, unit).phone_number is None
    set_unit_lock_text(session, hq, {"message": "本部へ", "phone_number": "03-0000-0000"}, actor=SYSTEM)
    set_unit_lock_text(session, station, {"message": "中央署へ", "phone_number": ""}, actor=SYSTEM)
    text = lock_text_for(session, unit)
    assert (text.message, text.phone_number) == ("中央署へ", "03-0000-0000")
    assert (text.message_unit, text.phone_unit) == (station, hq)
    set_unit_lock_text(session, unit, {"phone_number": " 119 "}, actor=SYSTEM)
    assert lock_text_for(session, unit).phone_number == "119"


def test_lock_now_sends_the_station_text_unless_the_operator_typed_one(session, frozen_clock):
    hq = create_unit(session, {"kind": "hq", "name_ja": "本部"}, actor=SYSTEM)
    station = create_unit(session, {"kind": "station", "name_ja": "北署", "parent_id": hq.id}, actor=SYSTEM)
    set_unit_lock_text(
        session, station, {"message": "北署へお届けください", "phone_number": "011-1"}, actor=SYSTEM
    )
    device = make_device(session, supervised=False)
    assign_device(session, device, station, actor=SYSTEM)
    incident = hotline.open_incident(session, device, {"caller_name": "山田"}, actor=OPERATOR)
    first = hotline.lock_now(session, incident, actor=OPERATOR).command
    assert first.params == {"Message": "北署へお届けください", "PhoneNumber": "011-1"}
    _answer(first, message_result="Success")
    typed = hotline.lock_now(
        session, incident, actor=OPERATOR, message={"message": "至急連絡を", "phone_number": ""}
    )
    assert typed.command.params == {"Message": "至急連絡を"}  # an emptied number is left out


def test_the_finder_screen_claims_only_what_the_tablet_answered(session, frozen_clock):
    device = make_device(session, supervised=False)
    incident = hotline.open_incident(session, device, {"caller_name": "山田"}, actor=OPERATOR)
    assert finder_screen(incident).state == FinderState.NOTHING_SENT
    first = hotline.lock_now(
        session, incident, actor=OPERATOR, message={"message": "拾得者は119へ", "phone_number": "119"}
    ).command
    screen = finder_screen(incident)
    assert screen.state == FinderState.NOT_ACKNOWLEDGED and screen.text is None
    assert screen.waiting is not None and screen.waiting.message == "拾得者は119へ"
    _answer(first, message_result="NoPasscodeSet")
    assert finder_screen(incident).state == FinderState.NOT_SHOWN
    _answer(first, message_result=None)
    assert finder_screen(incident).state == FinderState.UNKNOWN
    _answer(first, message_result="Success")
    shown = finder_screen(incident)
    assert shown.state == FinderState.SHOWN and shown.text is not None
    assert (shown.text.message, shown.text.phone_number) == ("拾得者は119へ", "119")
    # A newer lock with other text: the screen still shows the answered one until the tablet answers.
    second = hotline.lock_now(session, incident, actor=OPERATOR, message={"message": "別の文面"}).command
    newer = finder_screen(incident)
    assert newer.state == FinderState.SHOWN and newer.text.message == "拾得者は119へ"
    assert newer.waiting is not None and newer.waiting.command_uuid == second.uuid
    _answer(second, status=CommandStatus.ERROR)
    assert finder_screen(incident).state == FinderState.FAILED


def test_device_in_lost_mode_shows_the_lost_mode_text_it_acknowledged(session, frozen_clock):
    device = make_device(session, supervised=True)
    incident = hotline.open_incident(session, device, {"caller_name": "山田"}, actor=OPERATOR)
    lost = hotline.lock_now(
        session, incident, actor=OPERATOR, message={"message": "紛失中", "phone_number": "119"}
    )
    assert lost.command.request_type == "EnableLostMode"
    _answer(lost.command)
    screen = finder_screen(incident)
    assert screen.state == FinderState.SHOWN and screen.text.footnote
    device.is_supervised = False  # a later plain lock, answered DeviceInLostMode
    lock = hotline.lock_now(session, incident, actor=OPERATOR, message={"message": "別"}).command
    assert lock.request_type == "DeviceLock"
    _answer(lock, message_result="DeviceInLostMode")
    again = finder_screen(incident)
    assert again.state == FinderState.SHOWN and again.text.message == "紛失中"
