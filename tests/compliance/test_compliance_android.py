"""Android rules: security patch level older than the unit's minimum, agent not device owner.
The agent fills DeviceFacts; here the rows are set directly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mdm.ground.models import Device, DeviceFacts, OrgUnit, Severity
from mdm.services.compliance.evaluation import device_compliance, evaluate_device, open_findings
from mdm.services.compliance.rules import (
    DeviceState,
    android_not_device_owner,
    android_security_patch_outdated,
)
from mdm.services.unit_policy import UnitPolicy, parse_patch_level, policy_for, set_unit_policy
from tests.inventory.helpers import ADMIN
from tests.support.factories import make_device

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def state(facts: DeviceFacts | None, **policy: object) -> DeviceState:
    device = Device(id=1, platform="android", last_seen_at=NOW)
    return DeviceState(device=device, policy=UnitPolicy(**policy), now=NOW, facts=facts)  # type: ignore[arg-type]


def test_patch_level_older_than_the_minimum():
    old = DeviceFacts(device_id=1, android_security_patch="2025-01-05")
    [violation] = android_security_patch_outdated(state(old, minimum_android_security_patch="2025-06-01"))
    assert violation.severity == Severity.WARNING
    assert violation.details == {"security_patch": "2025-01-05", "minimum": "2025-06-01"}
    assert "2025-01-05" in violation.message and "2025-06-01" in violation.message
    same_day = DeviceFacts(device_id=1, android_security_patch="2025-06-01")
    assert android_security_patch_outdated(state(same_day, minimum_android_security_patch="2025-06-01")) == []
    # No minimum, no report, or a value that is not a date: nothing to judge.
    assert android_security_patch_outdated(state(old)) == []
    assert android_security_patch_outdated(state(None, minimum_android_security_patch="2025-06-01")) == []
    unknown = DeviceFacts(device_id=1, android_security_patch=None)
    assert android_security_patch_outdated(state(unknown, minimum_android_security_patch="2025-06-01")) == []
    garbage = DeviceFacts(device_id=1, android_security_patch="June 2025")
    assert android_security_patch_outdated(state(garbage, minimum_android_security_patch="2025-06-01")) == []


def test_not_device_owner():
    [violation] = android_not_device_owner(state(DeviceFacts(device_id=1, android_device_owner=False)))
    assert violation.severity == Severity.WARNING and "device owner" in violation.message
    assert android_not_device_owner(state(DeviceFacts(device_id=1, android_device_owner=True))) == []
    assert android_not_device_owner(state(DeviceFacts(device_id=1, android_device_owner=None))) == []
    assert android_not_device_owner(state(None)) == []


def test_patch_level_parsing_and_policy_validation(session):
    assert parse_patch_level("2025-06-05") == datetime(2025, 6, 5).date()
    assert parse_patch_level("2025-6-5") is None and parse_patch_level(None) is None
    with pytest.raises(ValueError, match="minimum_android_security_patch"):
        set_unit_policy(session, ADMIN, None, minimum_android_security_patch="last month")


def test_android_findings_open_and_close_on_the_database(session, frozen_clock):
    hq = OrgUnit(kind="hq", name_ja="消防本部")
    session.add(hq)
    session.flush()
    set_unit_policy(session, ADMIN, hq.id, minimum_android_security_patch="2025-06-01")
    device = make_device(session)
    device.platform = "android"
    device.org_unit_id = hq.id
    assert policy_for(session, device).minimum_android_security_patch == "2025-06-01"
    session.add(
        DeviceFacts(device_id=device.id, android_security_patch="2025-03-05", android_device_owner=False)
    )
    session.flush()
    evaluate_device(session, device)
    assert {f.rule for f in open_findings(session, device.id)} == {
        "android_security_patch_outdated",
        "android_not_device_owner",
    }
    assert device_compliance(session, device.id) == Severity.WARNING
    facts = session.get(DeviceFacts, device.id)
    facts.android_security_patch = "2025-07-05"
    facts.android_device_owner = True
    evaluate_device(session, device)
    assert open_findings(session, device.id) == []
    assert device_compliance(session, device.id) == Severity.OK
