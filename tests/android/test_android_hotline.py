"""The hotline drives Android tablets through the same workflow as iPads: lock now answered within
one long-poll round trip, location on the incident, and a two-person wipe ending in a wipe
certificate and a retired device."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

import commands.incidents as hotline
from commands.inventory_refresh import INVENTORY_KINDS, queue_inventory_refresh
from commands.queue import CommandRefused, enqueue_command
from mdm.ground.audit import Actor
from mdm.ground.db import transaction
from mdm.ground.models import (
    Command,
    CommandStatus,
    Device,
    EnrollmentState,
    Incident,
    IncidentStatus,
    WipeCertificate,
)
from tests.support.android_agent import AgentError
from tests.support.people import person

OPERATOR = Actor("operator-tanaka", "operator", "192.0.2.10")
APPROVER = Actor("duty-officer-sato", "approver", "192.0.2.11")
REPORT = {"caller_name": "山田 太郎", "caller_unit": "救急3隊", "lost_place": "中央区役所前", "kind": "lost"}


@pytest.fixture
def enrolled(agent_factory: Any, android_token: Any) -> Any:
    agent = agent_factory()
    agent.enroll(android_token())
    agent.sync()  # first inventory
    return agent


def _open_incident(factory: Any, device_id: int) -> int:
    with transaction(factory) as s:
        return hotline.open_incident(s, s.get(Device, device_id), REPORT, actor=OPERATOR).id


def test_lock_now_reaches_a_waiting_agent_within_one_long_poll(
    enroll_app: Any, enrolled: Any, session: Any
) -> None:
    factory = enroll_app.extensions["hikeshi"].session_factory
    incident_id = _open_incident(factory, enrolled.device_id)
    woke: dict[str, Any] = {}

    def hold_long_poll() -> None:
        started = time.monotonic()
        woke["pending"] = enrolled.wait(timeout=30)
        woke["seconds"] = time.monotonic() - started

    waiter = threading.Thread(target=hold_long_poll)
    waiter.start()
    time.sleep(0.5)  # the agent is parked in its long poll
    with transaction(factory) as s:
        outcome = hotline.lock_now(
            s, s.get(Incident, incident_id), actor=OPERATOR, message={"phone_number": "03-3212-2111"}
        )
        # A device owner is what supervision is on Apple: lost mode is available.
        assert outcome.lost_mode and outcome.command.request_type == "EnableLostMode"
    waiter.join(40)
    assert woke["pending"] is True
    assert woke["seconds"] < 25  # answered by the queued command, not by the poll's timeout

    answer = enrolled.sync()
    [command] = answer["commands"]
    assert command["type"] == "START_LOST_MODE"
    assert command["params"]["phone"] == "03-3212-2111" and command["params"]["message"]
    assert enrolled.tablet.lost_mode and enrolled.tablet.locked
    # Section 10.1: lock task on the agent's own home activity, and it survives a restart.
    assert enrolled.tablet.lock_task and enrolled.tablet.home_is_lost_mode
    enrolled.power_cycle()
    assert enrolled.tablet.lost_mode and enrolled.tablet.lock_task
    assert enrolled.tablet.lost_phone == "03-3212-2111"
    enrolled.sync()  # reports the acknowledgement
    session.rollback()
    session.expire_all()
    incident = session.get(Incident, incident_id)
    assert incident.status == IncidentStatus.LOCKED and incident.locked_at is not None
    assert [s.action for s in incident.steps][-1] == "lock_confirmed"
    # Nothing more to fetch: the long poll now times out.
    assert enrolled.wait(timeout=1) is False

    # Found: lost mode ends, and stays ended across a restart (its persisted state is gone).
    with transaction(factory) as s:
        enqueue_command(s, s.get(Device, enrolled.device_id), "DisableLostMode", {}, actor=OPERATOR)
    assert [c["type"] for c in enrolled.sync()["commands"]] == ["STOP_LOST_MODE"]
    assert not enrolled.tablet.lost_mode and not enrolled.tablet.lock_task
    enrolled.power_cycle()
    assert not enrolled.tablet.lost_mode and not enrolled.tablet.home_is_lost_mode


def test_lock_without_device_owner_is_a_plain_lock(
    enroll_app: Any, agent_factory: Any, android_token: Any
) -> None:
    agent = agent_factory(serial_number="R52T0000077")
    agent.enroll(android_token(), device_owner=False)
    factory = enroll_app.extensions["hikeshi"].session_factory
    incident_id = _open_incident(factory, agent.device_id)
    with transaction(factory) as s:
        outcome = hotline.lock_now(s, s.get(Incident, incident_id), actor=OPERATOR)
        assert not outcome.lost_mode and outcome.command.request_type == "DeviceLock"
    assert [c["type"] for c in agent.sync()["commands"]] == ["LOCK"]
    assert agent.tablet.locked and not agent.tablet.lost_mode


def test_locate_lands_on_the_incident(enroll_app: Any, enrolled: Any, session: Any) -> None:
    factory = enroll_app.extensions["hikeshi"].session_factory
    incident_id = _open_incident(factory, enrolled.device_id)
    with transaction(factory) as s:
        hotline.locate_device(s, s.get(Incident, incident_id), actor=OPERATOR)
    assert [c["type"] for c in enrolled.sync()["commands"]] == ["LOCATE"]
    enrolled.sync()
    session.rollback()
    session.expire_all()
    incident = session.get(Incident, incident_id)
    assert (incident.latitude, incident.longitude) == pytest.approx((35.6812, 139.7671))
    assert incident.location_accuracy == pytest.approx(12.0)


def test_two_person_wipe_produces_a_certificate_and_retires_the_device(
    enroll_app: Any, enrolled: Any, session: Any
) -> None:
    factory = enroll_app.extensions["hikeshi"].session_factory
    incident_id = _open_incident(factory, enrolled.device_id)
    with transaction(factory) as s:
        hotline.request_wipe(
            s, s.get(Incident, incident_id), actor=person(s, OPERATOR), reason="盗難の可能性"
        )
    assert enrolled.sync()["commands"] == []  # requested is not approved: nothing is sent
    with transaction(factory) as s, pytest.raises(hotline.SamePersonError):
        hotline.approve_wipe(s, s.get(Incident, incident_id), actor=person(s, OPERATOR))
    with transaction(factory) as s:
        hotline.approve_wipe(s, s.get(Incident, incident_id), actor=person(s, APPROVER))

    assert enrolled.wait(timeout=5) is True
    [command] = enrolled.sync()["commands"]
    # Apple's default (PreserveDataPlan false): the eSIM's data plan goes with the wipe.
    assert command["type"] == "WIPE" and command["params"]["flags"] == ["WIPE_EXTERNAL_STORAGE", "WIPE_EUICC"]
    assert not enrolled.tablet.wiped  # acknowledged first, erased after the server has it
    answer = enrolled.sync()
    assert enrolled.tablet.wiped
    # A device owner on API 34+ calls wipeDevice(flags); wipeData would throw there.
    assert enrolled.tablet.wipe_call == "wipeDevice"
    assert enrolled.tablet.wipe_flags == ["WIPE_EXTERNAL_STORAGE", "WIPE_EUICC"]
    assert answer["commands"] == [] and answer["enrollment_state"] == EnrollmentState.RETIRED

    session.rollback()
    session.expire_all()
    incident = session.get(Incident, incident_id)
    assert incident.status == IncidentStatus.WIPED and incident.wiped_at is not None
    [certificate] = session.scalars(select(WipeCertificate)).all()
    assert certificate.incident_id == incident_id
    assert b'"platform": "android"' in certificate.content
    # The certificate names the flags the tablet was told to wipe with.
    assert b"WIPE_EUICC" in certificate.content and b"WIPE_EXTERNAL_STORAGE" in certificate.content
    assert incident.wipe_requested_by == OPERATOR.name and incident.wipe_approved_by == APPROVER.name
    assert session.get(Device, enrolled.device_id).enrollment_state == EnrollmentState.RETIRED
    erase = session.scalars(select(Command).where(Command.request_type == "EraseDevice")).one()
    assert erase.status == CommandStatus.ACKNOWLEDGED
    # The retired device's agent is out.
    with pytest.raises(AgentError) as err:
        enrolled.sync()
    assert (err.value.status, err.value.body["error"]) == (403, "device_not_enrolled")


def test_other_apple_commands_render_for_android_and_unknown_ones_are_refused(
    enroll_app: Any, enrolled: Any, session: Any
) -> None:

    factory = enroll_app.extensions["hikeshi"].session_factory
    with transaction(factory) as s:
        device = s.get(Device, enrolled.device_id)
        for request_type in ("RestartDevice", "DeviceInformation"):
            enqueue_command(s, device, request_type, {}, actor=OPERATOR)
        # ClearPasscode (an empty password) cannot work under a password policy: ResetPassword does.
        for refused in (("InstallProfile", {"Payload": "AAAA"}), ("ClearPasscode", {})):
            with pytest.raises(CommandRefused):
                enqueue_command(s, device, refused[0], refused[1], actor=OPERATOR)
    types = sorted(c["type"] for c in enrolled.sync()["commands"])
    assert types == ["REBOOT", "REFRESH_INVENTORY"]
    answer = enrolled.sync()  # results, with the fresh inventory REFRESH_INVENTORY asked for
    assert answer["commands"] == []
    assert enrolled.tablet.rebooted == 1
    session.rollback()
    session.expire_all()
    statuses = {c.request_type: c.status for c in session.scalars(select(Command)).all()}
    assert set(statuses.values()) == {CommandStatus.ACKNOWLEDGED}


def test_not_now_is_offered_again_at_the_next_sync_and_errors_are_recorded(
    enroll_app: Any, enrolled: Any, session: Any
) -> None:
    factory = enroll_app.extensions["hikeshi"].session_factory
    with transaction(factory) as s:
        device = s.get(Device, enrolled.device_id)
        reboot = enqueue_command(s, device, "RestartDevice", {}, actor=OPERATOR).uuid
        locate = enqueue_command(s, device, "DeviceLocation", {}, actor=OPERATOR).uuid
    assert {c["id"] for c in enrolled.sync()["commands"]} == {reboot, locate}
    # The user is on a call: the reboot must wait; the location cannot be had.
    enrolled.pending_results = [
        {"command_id": reboot, "status": "not_now"},
        {"command_id": locate, "status": "error", "error": {"code": "no_location", "message": "GPS off"}},
    ]
    assert enrolled.sync()["commands"] == []  # not offered again in the same answer
    session.rollback()
    session.expire_all()
    by_uuid = {c.uuid: c for c in session.scalars(select(Command)).all()}
    assert by_uuid[reboot].status == CommandStatus.NOT_NOW
    assert by_uuid[locate].status == CommandStatus.ERROR
    assert by_uuid[locate].error_chain[0]["ErrorCode"] == "no_location"
    assert [c["id"] for c in enrolled.sync()["commands"]] == [reboot]


def test_a_full_inventory_refresh_from_the_console_reaches_the_agent(
    enroll_app: Any, enrolled: Any, session: Any
) -> None:

    factory = enroll_app.extensions["hikeshi"].session_factory
    with transaction(factory) as s:
        commands = queue_inventory_refresh(s, s.get(Device, enrolled.device_id), OPERATOR)
        assert [c.request_type for c in commands] == list(INVENTORY_KINDS)
    assert {c["type"] for c in enrolled.sync()["commands"]} == {"REFRESH_INVENTORY"}
    enrolled.sync()  # one inventory, every refresh acknowledged
    session.rollback()
    session.expire_all()
    assert {c.status for c in session.scalars(select(Command)).all()} == {CommandStatus.ACKNOWLEDGED}
