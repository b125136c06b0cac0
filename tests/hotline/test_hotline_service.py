"""The hotline services on a real database: lock now, the two-person wipe, break glass, location,
recovery and the auto-wipe policy. Device answers go through commands.results.record_result."""

from __future__ import annotations

import plistlib
from dataclasses import replace

import pytest
from sqlalchemy import select

import commands.incidents as hotline
from commands.delivery import next_command
from commands.queue import enqueue_command
from commands.results import record_result
from mdm.ground.audit import Actor, verify_chain
from mdm.ground.models import AuditEvent, CommandStatus, EnrollmentState, IncidentStatus, WipeCertificate
from mdm.services import orgunits
from tests.hotline.support import give_identity
from tests.support.factories import make_device
from tests.support.people import person

OPERATOR = Actor("operator-tanaka", "operator", "192.0.2.10")
APPROVER = Actor("duty-officer-sato", "approver", "192.0.2.11")
ADMIN = Actor("admin-suzuki", "admin", "192.0.2.12")
REPORT = {
    "caller_name": "山田 太郎",
    "caller_unit": "救急3隊",
    "callback_number": "090-1234-5678",
    "lost_place": "中央区役所前",
    "kind": "lost",
}


def _answer(session, device, command, status="Acknowledged", **extra):
    report = {"UDID": device.udid, "CommandUUID": command.uuid, "Status": status, **extra}
    identity = give_identity(session, device)
    return record_result(
        session, device, report, plistlib.dumps(report), actor=Actor("device", "device"), identity=identity
    )


@pytest.fixture
def incident(session, frozen_clock):
    device = make_device(session, supervised=True)
    give_identity(session, device)
    opened = hotline.open_incident(session, device, REPORT, actor=OPERATOR)
    session.commit()
    return opened


def test_open_incident_validates_and_names_the_field(session, frozen_clock):
    device = make_device(session)
    with pytest.raises(hotline.IncidentInputError) as err:
        hotline.open_incident(session, device, {"caller_name": "", "kind": "misplaced"}, actor=OPERATOR)
    assert set(err.value.fields) == {"caller_name", "kind"}


def test_lock_now_sends_lost_mode_to_a_supervised_device_first(session, incident):
    device = incident.device
    for _ in range(10):
        enqueue_command(session, device, "InstalledApplicationList", {"ManagedAppsOnly": True}, actor=ADMIN)
        enqueue_command(session, device, "RestartDevice", {}, actor=ADMIN)
    outcome = hotline.lock_now(session, incident, actor=OPERATOR, message={"phone_number": "03-3212-2111"})
    session.commit()
    assert outcome.lost_mode and outcome.command.request_type == "EnableLostMode"
    assert outcome.command.params["PhoneNumber"] == "03-3212-2111"
    assert outcome.command.expires_at is None
    first = next_command(session, device, offer_not_now=True)
    assert first.uuid == outcome.command.uuid
    _answer(session, device, first)
    session.commit()
    assert incident.status == IncidentStatus.LOCKED and incident.locked_at is not None
    views = hotline.incident_commands(incident)
    assert [(v.request_type, v.state) for v in views] == [("EnableLostMode", "acknowledged")]


def test_lock_now_falls_back_to_device_lock_and_says_so(session, frozen_clock):
    device = make_device(session, supervised=False)
    incident = hotline.open_incident(session, device, REPORT, actor=OPERATOR)
    outcome = hotline.lock_now(session, incident, actor=OPERATOR)
    assert not outcome.lost_mode and outcome.command.request_type == "DeviceLock"
    assert "supervised" in outcome.notice_en and "紛失モード" in outcome.notice_ja
    # Pressed twice while waiting: the same command, not a second one.
    again = hotline.lock_now(session, incident, actor=OPERATOR)
    assert again.command.id == outcome.command.id
    assert [s.action for s in incident.steps] == ["opened", "lock_sent", "lock_repushed"]


def test_two_people_are_needed_and_reasons_are_required(session, incident):
    with pytest.raises(hotline.IncidentStateError):
        hotline.approve_wipe(session, incident, actor=person(session, APPROVER))
    hotline.request_wipe(session, incident, actor=person(session, OPERATOR), reason="盗難の可能性")
    with pytest.raises(hotline.SamePersonError) as err:
        hotline.approve_wipe(
            session,
            incident,
            actor=replace(Actor(" Operator-Tanaka ", "approver"), user_id=person(session, OPERATOR).user_id),
        )
    assert err.value.field == "approver"
    with pytest.raises(hotline.ReasonRequired) as err:
        hotline.reject_wipe(session, incident, actor=person(session, APPROVER), reason="  ")
    assert err.value.field == "reason"
    hotline.reject_wipe(
        session, incident, actor=person(session, APPROVER), reason="端末の所在が判明しつつある"
    )
    assert incident.status == IncidentStatus.OPEN and incident.erase_command is None
    hotline.request_wipe(session, incident, actor=person(session, OPERATOR))
    command = hotline.approve_wipe(session, incident, actor=person(session, APPROVER))
    session.commit()
    assert command.request_type == "EraseDevice" and incident.status == IncidentStatus.WIPE_APPROVED
    assert hotline.wipe_progress(incident) == hotline.WipeProgress.NOT_DELIVERED
    actions = [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions.count("incident.wipe_requested") == 2
    assert "incident.wipe_rejected" in actions and "incident.wipe_approved" in actions
    assert verify_chain(session).ok


def test_break_glass_needs_an_admin_and_a_reason_and_is_flagged(session, incident):
    with pytest.raises(hotline.BreakGlassNotAllowed):
        hotline.break_glass_wipe(session, incident, actor=person(session, OPERATOR), reason="急ぎ")
    with pytest.raises(hotline.ReasonRequired):
        hotline.break_glass_wipe(session, incident, actor=person(session, ADMIN), reason="")
    command = hotline.break_glass_wipe(
        session, incident, actor=person(session, ADMIN), reason="患者情報を含む端末が盗難"
    )
    session.commit()
    assert command.request_type == "EraseDevice" and incident.break_glass
    [step] = [s for s in incident.steps if s.action == "wipe_break_glass"]
    assert step.flagged and step.details["reason"] == "患者情報を含む端末が盗難"
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "incident.wipe_break_glass")).one()
    assert event.details["flagged"] is True


def test_acknowledged_wipe_retires_the_device_and_fixes_the_certificate(session, incident):
    device = incident.device
    hotline.request_wipe(session, incident, actor=person(session, OPERATOR))
    erase = hotline.approve_wipe(session, incident, actor=person(session, APPROVER))
    assert next_command(session, device, offer_not_now=True).id == erase.id
    assert hotline.wipe_progress(incident) == hotline.WipeProgress.DELIVERED
    _answer(session, device, erase)
    session.commit()
    assert incident.status == IncidentStatus.WIPED
    assert device.enrollment_state == EnrollmentState.RETIRED
    row = session.scalars(select(WipeCertificate)).one()
    assert row.signature is None and b'"command_uuid": "' + erase.uuid.encode() in row.content
    assert hotline.wipe_progress(incident) == hotline.WipeProgress.CONFIRMED


def test_location_results_are_kept_on_the_incident(session, incident):
    device = incident.device
    command = hotline.locate_device(session, incident, actor=OPERATOR)
    assert next_command(session, device, offer_not_now=True).id == command.id
    _answer(
        session,
        device,
        command,
        Latitude=35.6812,
        Longitude=139.7671,
        HorizontalAccuracy=12.5,
        Timestamp="2026-11-23T02:58:00Z",
    )
    session.commit()
    assert (incident.latitude, incident.longitude, incident.location_accuracy) == (35.6812, 139.7671, 12.5)
    assert incident.located_at.isoformat() == "2026-11-23T02:58:00+00:00"
    assert [loc.latitude for loc in incident.locations] == [35.6812]
    assert "location_received" in [e.action for e in hotline.incident_timeline(session, incident)]


def test_recovery_disables_lost_mode_refreshes_inventory_and_closes(session, incident):
    device = incident.device
    hotline.lock_now(session, incident, actor=OPERATOR)
    _answer(session, device, next_command(session, device, offer_not_now=True))
    hotline.request_wipe(session, incident, actor=person(session, OPERATOR))
    erase = hotline.approve_wipe(session, incident, actor=person(session, APPROVER))
    hotline.recover(session, incident, actor=OPERATOR, note="救急車内で発見")
    session.commit()
    assert incident.status == IncidentStatus.CLOSED and incident.recovered_at is not None
    assert erase.status == CommandStatus.CANCELLED
    recovery = [v.request_type for v in hotline.incident_commands(incident) if v.purpose == "recovery"]
    assert recovery == ["DisableLostMode", "DeviceInformation", "SecurityInfo"]
    assert [s.action for s in incident.steps][-2:] == ["recovered", "closed"]
    with pytest.raises(hotline.IncidentStateError):
        hotline.lock_now(session, incident, actor=OPERATOR)


def test_auto_wipe_is_off_by_default_then_reminds_then_fires(session, frozen_clock):
    station = orgunits.create_unit(session, {"kind": "hq", "name_ja": "消防本部", "code": "HQ"}, actor=ADMIN)
    unit = orgunits.create_unit(
        session,
        {
            "kind": "unit",
            "name_ja": "救急3隊",
            "code": "A3",
            "unit_type": "ambulance",
            "parent_id": station.id,
        },
        actor=ADMIN,
    )
    device = make_device(session)
    device.org_unit_id = unit.id
    incident = hotline.open_incident(session, device, REPORT, actor=OPERATOR)
    frozen_clock.advance(hours=100)
    assert hotline.run_auto_wipe(session) == hotline.AutoWipeReport()
    with pytest.raises(hotline.IncidentInputError) as err:
        hotline.set_incident_policy(session, station, auto_wipe_after_hours=0, actor=ADMIN)
    assert "auto_wipe_after_hours" in err.value.fields
    hotline.set_incident_policy(
        session, station, auto_wipe_after_hours=110, remind_before_hours=12, actor=ADMIN
    )
    assert hotline.run_auto_wipe(session).reminded == [incident.id]
    assert hotline.run_auto_wipe(session) == hotline.AutoWipeReport()  # reminded once only
    frozen_clock.advance(hours=10)
    report = hotline.run_auto_wipe(session)
    session.commit()
    assert report.wiped == [incident.id]
    assert incident.status == IncidentStatus.WIPE_APPROVED and incident.erase_command is not None
    [step] = [s for s in incident.steps if s.action == "wipe_auto"]
    assert step.flagged
