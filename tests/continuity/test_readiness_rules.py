"""The rules of readiness as pure functions: what "working" means for one tablet, and how a unit's
state follows from its tablets, its plan and the spares at its station."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mdm.ground.models import EnrollmentState, OrgUnit, OrgUnitKind, ReadinessState, UnitType
from mdm.services.continuity.plans import DEFAULT_PLANS, Plan, PlanError, default_plan, load_plan
from mdm.services.continuity.readiness import compute
from mdm.services.continuity.working import DeviceFacts, is_available_spare, problems
from mdm.services.continuity.world import World

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
PLAN = Plan(required_working=1, max_seen_minutes=60, min_battery_percent=20)


def tablet(device_id: int = 1, **changes: object) -> DeviceFacts:
    base: dict[str, object] = {
        "device_id": device_id,
        "name": f"iPad {device_id}",
        "serial_number": f"SER{device_id}",
        "enrollment_state": EnrollmentState.ENROLLED,
        "last_seen_at": NOW - timedelta(minutes=5),
        "battery_level": 0.8,
    }
    base.update(changes)
    return DeviceFacts(**base)  # type: ignore[arg-type]


def codes(facts: DeviceFacts, plan: Plan = PLAN) -> list[str]:
    return [r.code for r in problems(facts, plan, NOW)]


def test_a_healthy_tablet_is_working() -> None:
    assert codes(tablet()) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"incident_id": 42, "incident_kind": "lost"}, ["lost"]),
        ({"incident_id": 43, "incident_kind": "stolen"}, ["stolen"]),
        ({"enrollment_state": EnrollmentState.RETIRED}, ["retired"]),
        ({"enrollment_state": EnrollmentState.PENDING}, ["not_enrolled"]),
        ({"enrollment_state": EnrollmentState.UNENROLLED}, ["not_enrolled"]),
        ({"last_seen_at": NOW - timedelta(minutes=61)}, ["not_seen"]),
        ({"last_seen_at": None}, ["not_seen"]),
        ({"battery_level": 0.19}, ["battery_low"]),
        ({"findings": (("passcode_missing", "critical"),)}, ["noncompliant"]),
    ],
)
def test_each_rule_names_its_reason(changes: dict[str, object], expected: list[str]) -> None:
    assert codes(tablet(**changes)) == expected


def test_reasons_speak_japanese_and_english_and_name_the_incident() -> None:
    [reason] = problems(tablet(incident_id=42, incident_kind="lost"), PLAN, NOW)
    assert reason.ja == "端末紛失 (インシデント 42)"
    assert reason.en == "tablet lost (incident 42)"
    assert reason.as_dict()["incident_id"] == 42


def test_limits_are_inclusive_of_the_plan_values() -> None:
    assert codes(tablet(last_seen_at=NOW - timedelta(minutes=60), battery_level=0.2)) == []


def test_unknown_battery_is_not_held_against_a_tablet() -> None:
    assert codes(tablet(battery_level=None)) == []
    assert codes(tablet(battery_level=0.01), Plan(1, 60, 0)) == []


def test_info_findings_and_named_rules_do_not_break_compliance() -> None:
    findings = (("os_outdated", "warning"), ("unauthorized_app", "info"))
    assert codes(tablet(findings=findings)) == ["noncompliant"]
    assert codes(tablet(findings=findings), Plan(1, 60, 20, ignored_rules=("os_outdated",))) == []
    assert codes(tablet(findings=findings), Plan(1, 60, 20, require_compliant=False)) == []


def test_a_spare_needs_to_be_enrolled_and_not_lost_but_may_sit_in_a_cabinet() -> None:
    assert is_available_spare(tablet(last_seen_at=NOW - timedelta(days=20), battery_level=0.05))
    assert not is_available_spare(tablet(incident_id=1, incident_kind="lost"))
    assert not is_available_spare(tablet(enrollment_state=EnrollmentState.RETIRED))


def test_every_unit_type_has_defaults_and_unknown_types_fall_back() -> None:
    assert set(DEFAULT_PLANS) == set(UnitType.ALL)
    assert default_plan("command").required_working == 2
    assert default_plan(None) == default_plan("other") and default_plan(None).is_default
    assert default_plan("no-such-type").required_working == 0


def test_plan_validation_names_each_bad_field() -> None:
    with pytest.raises(PlanError) as caught:
        load_plan(
            {
                "required_working": -1,
                "max_seen_minutes": 1,
                "min_battery_percent": 101,
                "ignored_rules": ["no_such_rule"],
            }
        )
    assert set(caught.value.fields) == {
        "required_working",
        "max_seen_minutes",
        "min_battery_percent",
        "ignored_rules",
    }
    with pytest.raises(PlanError) as missing:
        load_plan({})
    assert set(missing.value.fields) == {"required_working", "max_seen_minutes", "min_battery_percent"}
    assert load_plan({"required_working": 2, "max_seen_minutes": 30, "min_battery_percent": 0}) == {
        "required_working": 2,
        "max_seen_minutes": 30,
        "min_battery_percent": 0,
        "require_compliant": True,
        "ignored_rules": [],
    }


def _world(tablets: list[DeviceFacts], spares: list[DeviceFacts], plan: Plan = PLAN) -> World:
    hq = OrgUnit(id=1, kind=OrgUnitKind.HQ, name_ja="本部", parent_id=None)
    station = OrgUnit(id=2, kind=OrgUnitKind.STATION, name_ja="中央署", name_en="Central", parent_id=1)
    unit = OrgUnit(id=3, kind=OrgUnitKind.UNIT, name_ja="救急3隊", unit_type="ambulance", parent_id=2)
    world = World({1: hq, 2: station, 3: unit}, [unit], {3: plan})
    world.tablets[3] = tablets
    world.spares[2] = spares
    return world


def test_unit_state_from_its_tablets_and_station_spares() -> None:
    lost = tablet(2, incident_id=42, incident_kind="lost")
    ready = compute(_world([tablet(1), lost], []), NOW)[3]
    assert (ready.state, ready.working, ready.required) == (ReadinessState.READY, 1, 1)
    assert [m["device_id"] for m in ready.missing] == [2]

    degraded = compute(_world([lost], [tablet(9, last_seen_at=None)]), NOW)[3]
    assert (degraded.state, degraded.working, degraded.spares_available) == (ReadinessState.DEGRADED, 0, 1)
    assert degraded.station_ja == "中央署"

    critical = compute(_world([lost], [tablet(9, incident_id=7, incident_kind="lost")]), NOW)[3]
    assert (critical.state, critical.spares_available) == (ReadinessState.CRITICAL, 0)


def test_a_swapped_in_spare_on_its_way_keeps_the_unit_degraded() -> None:
    lost = tablet(2, incident_id=42, incident_kind="lost")
    arriving = tablet(9, last_seen_at=NOW - timedelta(days=3))
    world = _world([lost, arriving], [])
    world.incoming[9] = 3
    c = compute(world, NOW)[3]
    assert (c.state, c.incoming) == (ReadinessState.DEGRADED, 1)
    assert [m.get("incoming_spare", False) for m in c.missing] == [False, True]


def test_a_plan_of_zero_is_always_ready() -> None:
    assert compute(_world([], [], Plan(0, 60, 0)), NOW)[3].state == ReadinessState.READY


def test_worst_state_orders_ready_degraded_critical() -> None:
    assert ReadinessState.worst([]) == ReadinessState.READY
    assert ReadinessState.worst(["ready", "critical", "degraded"]) == ReadinessState.CRITICAL
