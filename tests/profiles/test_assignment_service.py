"""Assignment by org unit: inheritance down the tree, the commands a change queues, no duplicate
installs while one is in flight, results and ProfileList answers moving the per-device state."""

from __future__ import annotations

import hashlib
import plistlib

import pytest
from marshmallow import ValidationError
from sqlalchemy import func, select

from commands.catalog import CommandParamsError
from commands.queue import CommandRefused, CommandRequest, cancel_command, enqueue_commands
from commands.results import record_result
from mdm.ground.audit import Actor, verify_chain
from mdm.ground.ca import ensure_ca
from mdm.ground.models import AuditEvent, Command, CommandStatus, DeviceProfileState, EnrollmentState
from mdm.ground.push import take_pending_pushes
from mdm.services import devices, orgunits
from profiles.assignment import (
    apply_profile_version,
    assign_profile,
    desired_profiles,
    device_profile_states,
    list_assignments,
    profiles_along,
    reconcile_devices,
    unassign_profile,
)
from profiles.enforcement import compare_profile_list
from profiles.service import create_profile_from_template, update_profile
from profiles.signing import stored_apple_profile
from profiles.spec import profile_uuid
from tests.support.factories import make_device

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")


@pytest.fixture
def ready(session, settings):
    ensure_ca(session, settings)
    return settings


@pytest.fixture
def units(session):
    hq = orgunits.create_unit(session, {"kind": "hq", "name_ja": "本部", "code": "HQ"}, actor=ADMIN)
    st = orgunits.create_unit(
        session, {"kind": "station", "name_ja": "中央署", "code": "CEN", "parent_id": hq.id}, actor=ADMIN
    )
    br = orgunits.create_unit(
        session,
        {"kind": "branch", "name_ja": "駅前出張所", "code": "CEN-EKI", "parent_id": st.id},
        actor=ADMIN,
    )
    unit = orgunits.create_unit(
        session,
        {"kind": "unit", "name_ja": "駅前救急隊", "code": "CEN-EKI-A", "parent_id": br.id},
        actor=ADMIN,
    )
    other = orgunits.create_unit(
        session, {"kind": "station", "name_ja": "北署", "code": "NOR", "parent_id": hq.id}, actor=ADMIN
    )
    return {"hq": hq, "station": st, "branch": br, "unit": unit, "other": other}


def _device_in(session, unit, **kwargs):
    device = make_device(session, **kwargs)
    device.org_unit_id = unit.id
    session.flush()
    return device


def _profile(session, slug="field-standard", identifier="jp.example.fd.baseline"):
    return create_profile_from_template(session, ADMIN, slug, identifier=identifier)


def _commands(session, device, request_type=None):
    stmt = select(Command).where(Command.device_id == device.id).order_by(Command.id)
    if request_type:
        stmt = stmt.where(Command.request_type == request_type)
    return list(session.scalars(stmt))


def _ack(session, command, **extra):
    report = {"UDID": command.device.udid, "CommandUUID": command.uuid, "Status": "Acknowledged", **extra}
    record_result(session, command.device, report, plistlib.dumps(report), actor=ADMIN)


def test_desired_set_is_the_union_along_the_path(session, ready, units):
    device = _device_in(session, units["unit"])
    outside = _device_in(session, units["other"])
    baseline = _profile(session)
    wifi = _profile(session, "station-wifi", "jp.example.fd.wifi")
    assign_profile(session, ready, baseline, units["hq"], actor=ADMIN)
    assign_profile(session, ready, wifi, units["branch"], actor=ADMIN)
    assert [p.identifier for p in desired_profiles(session, device)] == [baseline.identifier, wifi.identifier]
    assert [p.identifier for p in desired_profiles(session, outside)] == [baseline.identifier]
    # The same set read along a unit chain the caller has (an Android sync reads it anyway).
    for someone in (device, outside):
        chain = orgunits.unit_chains(session, {someone.org_unit_id})[someone.org_unit_id]
        along = profiles_along(session, [unit.id for unit in chain])
        assert along == desired_profiles(session, someone)
    assert profiles_along(session, []) == []
    assert len(_commands(session, device, "InstallProfile")) == 2
    assert len(_commands(session, outside, "InstallProfile")) == 1
    assert len(list_assignments(session, unit=units["hq"])) == 1
    with pytest.raises(ValidationError) as err:
        assign_profile(session, ready, baseline, units["hq"], actor=ADMIN)
    assert "unit" in err.value.messages


def test_assignment_queues_in_bulk_audits_once_and_requests_pushes(session, ready, units):
    devices = [_device_in(session, units["unit"]) for _ in range(5)]
    retired = _device_in(session, units["unit"], state=EnrollmentState.RETIRED)
    take_pending_pushes(session)
    profile = _profile(session)
    summary = assign_profile(session, ready, profile, units["station"], actor=ADMIN)
    assert summary.devices == 5 and len(summary.installs) == 5
    assert take_pending_pushes(session) == {d.id for d in devices}
    assert _commands(session, retired) == []
    queued = session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "command.queued")
    )
    assert queued == 0  # one event for the assignment, not one per device
    [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "profile.assigned")).all()
    details = event.details
    assert (details["identifier"], details["org_unit_id"], details["installs"]) == (
        profile.identifier,
        units["station"].id,
        5,
    )
    # What an auditor needs to find every device of the assignment, and to notice a change.
    batch = list(
        session.scalars(select(Command).where(Command.batch == details["batch"]).order_by(Command.id))
    )
    assert {c.device_id for c in batch} == {d.id for d in devices} and details["devices"] == 5
    assert (details["first_command_id"], details["last_command_id"]) == (batch[0].id, batch[-1].id)
    lines = "".join(f"{c.uuid} {c.device_id}\n" for c in batch)
    assert details["commands_sha256"] == hashlib.sha256(lines.encode()).hexdigest()
    # The command refers to the signed profile stored once; its bytes are neither in it nor audited.
    stored = stored_apple_profile(session, profile.id, 1)
    assert batch[0].params == {"Rendering": {"profile_id": profile.id, "version": 1, "sha256": stored.sha256}}
    assert "Payload" not in str(details)
    assert verify_chain(session).ok
    first = _commands(session, devices[0])[0]
    assert first.priority == 50 and first.status == CommandStatus.QUEUED


def test_same_install_is_not_queued_twice_while_in_flight(session, ready, units):
    device = _device_in(session, units["unit"])
    profile = _profile(session)
    assign_profile(session, ready, profile, units["station"], actor=ADMIN)
    again = reconcile_devices(session, [device.id], actor=ADMIN, settings=ready)
    assert again.installs == []
    [install] = _commands(session, device, "InstallProfile")
    # A new version replaces the undelivered install of the old one.
    update_profile(session, ADMIN, profile, dict(profile.spec, name_en="Baseline v2"))
    summary = apply_profile_version(session, ready, profile, actor=ADMIN)
    assert len(summary.installs) == 1
    session.refresh(install)
    assert install.status == CommandStatus.CANCELLED
    [state] = device_profile_states(session, device)
    assert (state.desired_version, state.pending_version, state.installed_version) == (2, 2, None)
    # Acknowledged: installed; reconciling again queues nothing.
    _ack(session, summary.installs[0])
    session.flush()
    session.refresh(state)
    assert (state.installed_version, state.pending_command_uuid) == (2, None)
    assert reconcile_devices(session, [device.id], actor=ADMIN).installs == []


def test_hooks_without_settings_use_the_stored_signed_rendering(session, ready, units):
    device = _device_in(session, units["unit"])
    profile = _profile(session)
    assign_profile(session, ready, profile, units["station"], actor=ADMIN)
    newcomer = _device_in(session, units["unit"])
    summary = reconcile_devices(session, [newcomer.id], actor=ADMIN)
    assert len(summary.installs) == 1
    assert summary.installs[0].params == _commands(session, device, "InstallProfile")[0].params
    # A version made without settings has no signed rendering yet: nothing is sent, it is said.
    update_profile(session, ADMIN, profile, dict(profile.spec, name_en="Baseline v2"))
    summary = reconcile_devices(session, [newcomer.id], actor=ADMIN)
    assert summary.installs == [] and summary.unsigned == [(profile.id, 2)]


def test_moving_a_device_out_removes_and_cancelled_installs_are_not_removed(session, ready, units):
    delivered = _device_in(session, units["unit"])
    undelivered = _device_in(session, units["unit"])
    profile = _profile(session)
    assign_profile(session, ready, profile, units["station"], actor=ADMIN)
    _ack(session, _commands(session, delivered, "InstallProfile")[0])
    take_pending_pushes(session)
    # mdm.services.orgunits.assign_device is the one way to move a device; profiles follow through its hook.
    assert orgunits.assign_device(session, delivered, units["other"], actor=ADMIN) is True
    [remove] = _commands(session, delivered, "RemoveProfile")
    assert remove.params == {"Identifier": profile.identifier}
    assert take_pending_pushes(session) == {delivered.id}
    assert orgunits.assign_device(session, delivered, units["other"], actor=ADMIN) is False
    assert len(_commands(session, delivered, "RemoveProfile")) == 1
    # Never delivered: the install is cancelled, nothing to remove, nothing left tracked.
    orgunits.assign_device(session, undelivered, units["other"], actor=ADMIN)
    assert _commands(session, undelivered, "RemoveProfile") == []
    assert _commands(session, undelivered, "InstallProfile")[0].status == CommandStatus.CANCELLED
    assert device_profile_states(session, undelivered) == []
    _ack(session, remove)
    assert device_profile_states(session, delivered) == []
    # Moving back while nothing is installed installs again.
    orgunits.assign_device(session, delivered, units["unit"], actor=ADMIN)
    assert len(_commands(session, delivered, "InstallProfile")) == 2


def test_moving_a_unit_under_another_station_follows_the_new_path(session, ready, units):
    device = _device_in(session, units["unit"])
    profile = _profile(session)
    assign_profile(session, ready, profile, units["other"], actor=ADMIN)
    assert _commands(session, device, "InstallProfile") == []
    take_pending_pushes(session)
    # The branch (and the unit below it) moves from 中央署 to 北署, which has the profile.
    orgunits.move_unit(session, units["branch"], units["other"], actor=ADMIN)
    [install] = _commands(session, device, "InstallProfile")
    assert take_pending_pushes(session) == {device.id}
    _ack(session, install)
    # Back under 中央署: the profile is no longer inherited and is removed.
    orgunits.move_unit(session, units["branch"], units["station"], actor=ADMIN)
    [remove] = _commands(session, device, "RemoveProfile")
    assert remove.params == {"Identifier": profile.identifier}


def test_unassign_removes_only_where_no_other_assignment_covers(session, ready, units):
    device = _device_in(session, units["unit"])
    profile = _profile(session)
    assign_profile(session, ready, profile, units["hq"], actor=ADMIN)
    assign_profile(session, ready, profile, units["station"], actor=ADMIN)
    _ack(session, _commands(session, device, "InstallProfile")[0])
    summary = unassign_profile(session, ready, profile, units["station"], actor=ADMIN)
    assert summary.removals == [] and summary.installs == []
    summary = unassign_profile(session, ready, profile, units["hq"], actor=ADMIN)
    assert [c.params for c in summary.removals] == [{"Identifier": profile.identifier}]
    with pytest.raises(ValidationError):
        unassign_profile(session, ready, profile, units["hq"], actor=ADMIN)


def test_profile_list_reinstalls_missing_and_outdated_and_reports_foreign(session, ready, units):
    device = _device_in(session, units["unit"])
    profile = _profile(session)
    assign_profile(session, ready, profile, units["station"], actor=ADMIN)
    _ack(session, _commands(session, device, "InstallProfile")[0])
    entry = {"PayloadIdentifier": profile.identifier, "PayloadUUID": profile_uuid(profile.identifier, 1)}
    # Installed and current: verified, nothing queued.
    assert compare_profile_list(session, device, [entry]) == []
    [state] = device_profile_states(session, device)
    assert state.installed_version == 1 and state.last_verified_at is not None
    assert len(_commands(session, device, "InstallProfile")) == 1
    # Missing: reinstalled. A foreign profile is recorded and audited once.
    foreign = {"PayloadIdentifier": "com.example.game", "PayloadUUID": "X", "PayloadDisplayName": "Game"}
    assert compare_profile_list(session, device, [foreign]) == ["com.example.game"]
    assert len(_commands(session, device, "InstallProfile")) == 2
    assert compare_profile_list(session, device, [foreign]) == []
    assert len(_commands(session, device, "InstallProfile")) == 2  # the reinstall is in flight
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "device.foreign_profiles_found")
    ).all()
    assert [e.details["identifiers"] for e in events] == [["com.example.game"]]
    # The reinstall expired undelivered; an outdated version reported: installed again.
    pending = _commands(session, device, "InstallProfile")[-1]
    cancel_command(session, pending, actor=ADMIN)
    old = {"PayloadIdentifier": profile.identifier, "PayloadUUID": profile_uuid(profile.identifier, 1)}
    update_profile(session, ADMIN, profile, dict(profile.spec, name_en="Baseline v2"))
    apply_profile_version(session, ready, profile, actor=ADMIN)
    _ack(session, _commands(session, device, "InstallProfile")[-1])
    compare_profile_list(session, device, [old])
    state = session.scalars(
        select(DeviceProfileState).where(DeviceProfileState.identifier == profile.identifier)
    ).one()
    assert (state.installed_version, state.desired_version, state.pending_version) == (1, 2, 2)
    # The foreign profile gone from the list: no longer tracked.
    assert all(not s.is_foreign for s in device_profile_states(session, device))


def test_bulk_queue_is_all_or_nothing_and_validates_each_request(session, units):
    good = _device_in(session, units["unit"])
    retired = _device_in(session, units["unit"], state=EnrollmentState.RETIRED)
    before = session.scalar(select(func.count()).select_from(AuditEvent))
    with pytest.raises(CommandRefused) as refused:
        enqueue_commands(
            session,
            [CommandRequest(good, "SecurityInfo", {}), CommandRequest(retired, "SecurityInfo", {})],
            actor=ADMIN,
        )
    assert refused.value.field == "device"
    with pytest.raises(CommandParamsError) as bad:
        enqueue_commands(session, [CommandRequest(good, "RemoveProfile", {"Identifier": "x"})], actor=ADMIN)
    assert "Identifier" in bad.value.fields
    assert _commands(session, good) == []
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == before
    queued = enqueue_commands(
        session,
        [
            CommandRequest(good, "SecurityInfo", {}),
            CommandRequest(good, "RemoveProfile", {"Identifier": "a.b.c"}),
        ],
        actor=ADMIN,
    )
    assert [c.request_type for c in queued] == ["SecurityInfo", "RemoveProfile"]
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "command.queued").order_by(AuditEvent.id)
    ).all()
    assert [e.target_id for e in events] == [c.uuid for c in queued]
    assert events[1].details["params"] == {"Identifier": "a.b.c"}
    assert verify_chain(session).ok


def test_enrollment_installs_the_profiles_of_the_devices_unit(session, ready, units):
    profile = _profile(session)
    assign_profile(session, ready, profile, units["station"], actor=ADMIN)
    device = _device_in(session, units["unit"], state=EnrollmentState.PENDING)
    message = {
        "MessageType": "TokenUpdate",
        "Token": b"\x01" * 32,
        "PushMagic": "MAGIC",
        "Topic": "com.apple.mgmt.x",
    }
    devices.token_update(session, device, message, plistlib.dumps(message), None, secret_key=ready.secret_key)
    [install] = _commands(session, device, "InstallProfile")
    assert install.params["Rendering"]["sha256"] == stored_apple_profile(session, profile.id, 1).sha256
    [state] = device_profile_states(session, device)
    assert (state.desired_version, state.pending_command_uuid) == (1, install.uuid)
    _ack(session, install)
    # Enrolling again (after a CheckOut the device lost its MDM profiles): installed anew.
    devices.check_out(session, device, b"", None)
    devices.token_update(session, device, message, plistlib.dumps(message), None, secret_key=ready.secret_key)
    assert len(_commands(session, device, "InstallProfile")) == 2
    [state] = device_profile_states(session, device)
    assert (state.installed_version, state.pending_version) == (None, 1)


def test_refused_install_is_shown_and_tried_again_at_the_next_reconciliation(session, ready, units):
    device = _device_in(session, units["unit"])
    profile = _profile(session)
    assign_profile(session, ready, profile, units["station"], actor=ADMIN)
    [install] = _commands(session, device, "InstallProfile")
    chain = [
        {"ErrorCode": 4001, "ErrorDomain": "MCProfileErrorDomain", "USEnglishDescription": "Bad profile"}
    ]
    report = {"UDID": device.udid, "CommandUUID": install.uuid, "Status": "Error", "ErrorChain": chain}
    record_result(session, device, report, plistlib.dumps(report), actor=ADMIN)
    [state] = device_profile_states(session, device)
    assert state.last_error == "MCProfileErrorDomain 4001: Bad profile"
    assert (state.installed_version, state.pending_command_uuid) == (None, None)
    again = reconcile_devices(session, [device.id], actor=ADMIN)
    assert len(again.installs) == 1
    _ack(session, again.installs[0])
    assert (state.installed_version, state.last_error) == (1, None)


def test_assigned_again_before_the_removal_was_delivered_cancels_the_removal(session, ready, units):
    device = _device_in(session, units["unit"])
    profile = _profile(session)
    assign_profile(session, ready, profile, units["station"], actor=ADMIN)
    _ack(session, _commands(session, device, "InstallProfile")[0])
    unassign_profile(session, ready, profile, units["station"], actor=ADMIN)
    [removal] = _commands(session, device, "RemoveProfile")
    summary = assign_profile(session, ready, profile, units["station"], actor=ADMIN)
    assert summary.installs == [] and summary.cancelled == [removal]
    [state] = device_profile_states(session, device)
    assert (state.desired_version, state.installed_version, state.pending_command_uuid) == (1, 1, None)
    # Delivered removal: the install follows it.
    unassign_profile(session, ready, profile, units["station"], actor=ADMIN)
    removal = _commands(session, device, "RemoveProfile")[-1]
    removal.status = CommandStatus.SENT
    summary = assign_profile(session, ready, profile, units["station"], actor=ADMIN)
    assert len(summary.installs) == 1 and summary.installs[0].id > removal.id
    _ack(session, removal)
    _ack(session, summary.installs[0])
    assert (state.installed_version, state.pending_command_uuid) == (1, None)
