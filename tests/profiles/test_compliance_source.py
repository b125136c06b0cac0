"""The profiles' expected-profiles source: connected by the wiring, so the compliance rule
profile_missing_or_outdated sees assigned profiles end to end (assignment → ProfileList → finding)."""

from __future__ import annotations

import plistlib

import pytest
from sqlalchemy import select

from commands.results import record_result
from mdm.ground.ca import ensure_ca
from mdm.ground.models import Command
from mdm.services import orgunits
from mdm.services.compliance import sources
from mdm.services.compliance.evaluation import open_findings
from mdm.services.compliance.profile_sources import expected_profiles_from_assignments
from profiles.assignment import assign_profile, update_profile_and_apply
from profiles.service import create_profile_from_template
from profiles.spec import profile_uuid
from tests.inventory.helpers import ADMIN, answer
from tests.support.factories import make_device

IDENTIFIER = "jp.example.fd.baseline"


@pytest.fixture
def ready(session, settings):
    ensure_ca(session, settings)
    return settings


@pytest.fixture
def station(session):
    hq = orgunits.create_unit(session, {"kind": "hq", "name_ja": "本部", "code": "HQ"}, actor=ADMIN)
    return orgunits.create_unit(
        session, {"kind": "station", "name_ja": "中央署", "code": "CEN", "parent_id": hq.id}, actor=ADMIN
    )


def _installs(session, device):
    return list(
        session.scalars(
            select(Command)
            .where(Command.device_id == device.id, Command.request_type == "InstallProfile")
            .order_by(Command.id)
        )
    )


def _ack(session, command):
    report = {"UDID": command.device.udid, "CommandUUID": command.uuid, "Status": "Acknowledged"}
    record_result(session, command.device, report, plistlib.dumps(report), actor=ADMIN)


def _profile_list(session, device, *versions):
    items = [
        {
            "PayloadIdentifier": IDENTIFIER,
            "PayloadUUID": profile_uuid(IDENTIFIER, v),
            "PayloadDisplayName": "x",
        }
        for v in versions
    ]
    answer(session, device, "ProfileList", {"ProfileList": items})


def _profile_findings(session, device):
    return [
        (f.subject, f.details.get("reason"))
        for f in open_findings(session, device.id)
        if f.rule == "profile_missing_or_outdated"
    ]


def test_the_source_is_connected_by_the_wiring(session, ready):
    assert expected_profiles_from_assignments in sources.EXPECTED_PROFILE_SOURCES.hooks(session)


def test_missing_and_outdated_profiles_are_findings_once_the_device_was_checked(session, ready, station):
    device = make_device(session)
    orgunits.assign_device(session, device, station, actor=ADMIN)
    profile = create_profile_from_template(session, ADMIN, "field-standard", identifier=IDENTIFIER)
    assign_profile(session, ready, profile, station, actor=ADMIN)
    # Just assigned, install in flight, never checked: not expected yet.
    assert sources.expected_profiles_for(session, device) == []

    [install] = _installs(session, device)
    _ack(session, install)
    [expected] = sources.expected_profiles_for(session, device)
    assert (expected.identifier, expected.payload_uuid) == (IDENTIFIER, profile_uuid(IDENTIFIER, 1))
    _profile_list(session, device, 1)
    assert _profile_findings(session, device) == []

    # The user removed it: a finding, and a reinstall is queued; it stays open until confirmed.
    _profile_list(session, device)
    assert _profile_findings(session, device) == [(IDENTIFIER, "missing")]
    reinstall = _installs(session, device)[-1]
    assert reinstall.id != install.id
    _profile_list(session, device)
    assert _profile_findings(session, device) == [(IDENTIFIER, "missing")]
    _ack(session, reinstall)
    _profile_list(session, device, 1)
    assert _profile_findings(session, device) == []

    # A new version that the device has not installed yet is outdated.
    spec = dict(profile.spec, name_en="Baseline v2")
    update_profile_and_apply(session, ready, profile, spec, actor=ADMIN)
    _profile_list(session, device, 1)
    assert _profile_findings(session, device) == [(IDENTIFIER, "outdated")]
    _ack(session, _installs(session, device)[-1])
    _profile_list(session, device, 2)
    assert _profile_findings(session, device) == []


def test_android_devices_and_devices_without_profiles_expect_nothing(session, ready, station):
    device = make_device(session)
    assert sources.expected_profiles_for(session, device) is None
    device.platform = "android"
    orgunits.assign_device(session, device, station, actor=ADMIN)
    profile = create_profile_from_template(session, ADMIN, "field-standard", identifier=IDENTIFIER)
    assign_profile(session, ready, profile, station, actor=ADMIN)
    assert expected_profiles_from_assignments(session, device) is None


def _counted_evaluation(session, devices):
    """The statements evaluate_devices sends for `devices`, and what it found for each."""
    from sqlalchemy import event

    from mdm.services.compliance.evaluation import evaluate_devices

    engine = session.get_bind()
    seen = []
    # PostgreSQL runs an executemany's statement once per row (SQLite's stays in the process).
    per_row = engine.dialect.name == "postgresql"

    def note(_conn, _cursor, statement, parameters, _context, executemany):
        seen.extend([statement] * (len(parameters) if executemany and per_row else 1))

    session.flush()
    event.listen(engine, "before_cursor_execute", note)
    try:
        found = evaluate_devices(session, devices)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return seen, {device_id: sorted((f.rule, f.subject) for f in open_) for device_id, open_ in found.items()}


def test_devices_evaluated_together_read_the_assigned_profiles_once(session, ready, station):
    """The drain evaluates the devices of its batch together, as a fleet check does a page: the
    unit tree, the assignments, the profiles and their states are read once for all of them, not
    twice a device (app rules and expected profiles); each device's findings are its own."""
    profile = create_profile_from_template(session, ADMIN, "field-standard", identifier=IDENTIFIER)
    assign_profile(session, ready, profile, station, actor=ADMIN)
    devices = []
    for _n in range(9):
        device = make_device(session)
        orgunits.assign_device(session, device, station, actor=ADMIN)
        devices.append(device)
    session.flush()
    for device in devices:
        _ack(session, _installs(session, device)[-1])
    for device in devices[:4]:
        _profile_list(session, device)  # removed by the user on these four: "missing"
    _counted_evaluation(session, devices)  # each device's compliance row exists from here on
    # Devices without findings (a finding still seen is confirmed row by row: not counted here).
    few, _ = _counted_evaluation(session, devices[4:6])
    more, _ = _counted_evaluation(session, devices[4:])
    assert len(few) == len(more), "\n".join(s.split("\n")[0][:120] for s in more)
    _, many_found = _counted_evaluation(session, devices)
    one_by_one = {}
    for device in devices:
        one_by_one.update(_counted_evaluation(session, [device])[1])
    assert many_found == one_by_one
    assert [many_found[d.id] for d in devices[:4]] == [[("profile_missing_or_outdated", IDENTIFIER)]] * 4
    assert all(many_found[d.id] == [] for d in devices[4:])
