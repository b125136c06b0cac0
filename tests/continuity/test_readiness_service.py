"""Readiness recomputed by the hooks in the transaction of every device change, each change of
state recorded with its cause in Japanese and English; plans, spares, swap, rollups, schedule."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from commands.incidents import open_incident, recover
from mdm.ground import clock
from mdm.ground.audit import SYSTEM
from mdm.ground.models import (
    AuditEvent,
    ComplianceFinding,
    EnrollmentState,
    IncidentStep,
    ReadinessEvent,
    SpareDevice,
    UnitReadinessState,
)
from mdm.roots.scheduler.jobs import JobContext
from mdm.services.continuity import (
    PlanError,
    SpareError,
    current_readiness,
    hq_rollup,
    mark_spare,
    plan_for,
    readiness_history,
    readiness_job,
    set_plan,
    spares_by_station,
    station_rollup,
    swap_spare,
)
from mdm.services.continuity.readiness import recompute, recompute_in_parts, tablet_bounded_parts
from mdm.services.continuity.webhooks import recompute_every_unit
from mdm.services.orgunits import assign_device
from tests.continuity.helpers import ADMIN, OPERATOR, build_tree, tablet


@pytest.fixture
def world(session, frozen_clock):
    tree = build_tree(session)
    a3 = tablet(session, tree.ambulance3, "救急3 iPad")
    c1 = tablet(session, tree.command, "指揮 iPad 1")
    c2 = tablet(session, tree.command, "指揮 iPad 2")
    session.commit()
    return tree, a3, c1, c2


def states(session) -> dict[str, tuple[str, int, int, int]]:
    session.expire_all()
    return {
        u.unit_name_ja: (u.state, u.working, u.required, u.spares_available)
        for u in current_readiness(session)
    }


def last_event(session, unit_id: int) -> ReadinessEvent:
    return session.scalars(
        select(ReadinessEvent).where(ReadinessEvent.org_unit_id == unit_id).order_by(ReadinessEvent.id.desc())
    ).first()


def test_first_evaluation_follows_the_unit_type_defaults(session, world):
    assert states(session) == {
        "救急3隊": ("ready", 1, 1, 0),
        "中央ポンプ隊": ("critical", 0, 1, 0),
        "中央指揮隊": ("ready", 2, 2, 0),
        "北救急隊": ("critical", 0, 1, 0),
    }
    tree = world[0]
    first = last_event(session, tree.ambulance3.id)
    assert first.previous_state is None and first.cause_code in ("evaluated", "device_added")
    assert first.payload["event_id"] == first.id and first.payload["unit"]["name_ja"] == "救急3隊"


def test_lost_tablet_without_spare_is_critical_with_its_cause(session, world):
    tree, a3, *_ = world
    incident = open_incident(session, a3, {"caller_name": "救急3隊 隊長"}, actor=OPERATOR)
    session.commit()
    assert states(session)["救急3隊"] == ("critical", 0, 1, 0)
    event = last_event(session, tree.ambulance3.id)
    assert (event.previous_state, event.state, event.cause_code) == ("ready", "critical", "lost")
    assert (
        event.cause_en
        == f"Ambulance 3: critical — tablet lost (incident {incident.id}), no spare at Central (0/1 working)"
    )
    assert (
        event.cause_ja
        == f"救急3隊: 危機 — 端末紛失 (インシデント {incident.id})、中央署に予備機なし (稼働 0/1台)"
    )
    [missing] = event.payload["missing"]
    assert missing["device_id"] == a3.id and missing["reasons"][0]["incident_id"] == incident.id

    recover(session, incident, actor=OPERATOR, note="見つかった")
    session.commit()
    assert states(session)["救急3隊"] == ("ready", 1, 1, 0)
    back = last_event(session, tree.ambulance3.id)
    assert back.cause_code == "device_working" and back.cause_en.startswith(
        "Ambulance 3: ready — tablet 救急3 iPad"
    )


def test_spare_at_the_station_makes_it_degraded_and_a_swap_recovers_on_check_in(session, world, frozen_clock):
    tree, a3, *_ = world
    spare = tablet(session, tree.central, "予備機 1")
    spare.last_seen_at = clock.now() - timedelta(days=10)  # charging in the cabinet
    mark_spare(session, spare, actor=ADMIN, note="中央署 予備棚")
    session.commit()
    assert states(session)["中央ポンプ隊"] == ("degraded", 0, 1, 1)
    [central] = [s for s in spares_by_station(session) if s.station_id == tree.central.id]
    assert [(s.device_id, s.available) for s in central.spares] == [
        (spare.id, True)
    ] and central.available == 1

    incident = open_incident(session, a3, {"caller_name": "救急3隊"}, actor=OPERATOR)
    session.commit()
    assert states(session)["救急3隊"] == ("degraded", 0, 1, 1)
    assert last_event(session, tree.ambulance3.id).cause_en.endswith("1 spare(s) at Central (0/1 working)")

    outcome = swap_spare(session, spare, tree.ambulance3, actor=OPERATOR, incident=incident)
    session.commit()
    assert outcome.recorded_on_incident and spare.org_unit_id == tree.ambulance3.id
    session.expire_all()
    # On its way: not yet seen in the unit, but no longer critical; the pump company lost its spare.
    [a3_state] = [u for u in current_readiness(session) if u.unit_id == tree.ambulance3.id]
    assert (a3_state.state, a3_state.incoming_spares) == ("degraded", 1)
    assert states(session)["中央ポンプ隊"] == ("critical", 0, 1, 0)
    swapped = last_event(session, tree.ambulance3.id)
    assert swapped.cause_code == "spare_swapped" and "予備機 予備機 1 を配置" in swapped.cause_ja
    steps = session.scalars(select(IncidentStep).where(IncidentStep.incident_id == incident.id)).all()
    assert [s.action for s in steps][-1] == "spare_swapped"
    assert session.scalars(select(AuditEvent).where(AuditEvent.action == "continuity.spare_swapped")).one()

    # Seen just before the swap is not seen after it: still on its way.
    [a3_state] = [u for u in current_readiness(session) if u.unit_id == tree.ambulance3.id]
    assert a3_state.state == "degraded"
    frozen_clock.advance(minutes=1)
    spare.last_seen_at = clock.now()  # the tablet checks in (the unit assigns it no profiles)
    session.commit()
    assert states(session)["救急3隊"] == ("ready", 1, 1, 0)
    arrived = last_event(session, tree.ambulance3.id)
    assert arrived.cause_en == (
        "Ambulance 3: ready — spare 予備機 1 checked in holding the unit's profiles (1/1 working)"
    )
    assert session.scalars(select(SpareDevice)).all() == []  # arrived: no longer a spare at all


def test_swap_refuses_what_is_not_a_usable_spare(session, world):
    tree, a3, c1, _ = world
    with pytest.raises(SpareError) as not_spare:
        swap_spare(session, c1, tree.ambulance3, actor=OPERATOR)
    assert not_spare.value.field == "spare_device_id"
    spare = tablet(session, tree.central, "予備機")
    mark_spare(session, spare, actor=ADMIN)
    with pytest.raises(SpareError) as to_station:
        swap_spare(session, spare, tree.north, actor=OPERATOR)
    assert to_station.value.field == "unit_id"
    open_incident(session, spare, {"caller_name": "x"}, actor=OPERATOR)
    with pytest.raises(SpareError) as lost_spare:
        swap_spare(session, spare, tree.ambulance3, actor=OPERATOR)
    assert lost_spare.value.status == 409
    with pytest.raises(SpareError) as in_unit:
        mark_spare(session, a3, actor=ADMIN)
    assert in_unit.value.field == "device_id"


def test_every_kind_of_device_change_reaches_readiness(session, world, frozen_clock):
    tree, a3, c1, _c2 = world
    c1.enrollment_state = EnrollmentState.RETIRED
    session.commit()
    assert states(session)["中央指揮隊"][:2] == ("critical", 1)
    assert last_event(session, tree.command.id).cause_code == "retired"

    assign_device(session, c1, tree.pump, actor=SYSTEM)  # moved: both units recompute
    c1.enrollment_state = EnrollmentState.ENROLLED
    session.commit()
    assert states(session)["中央ポンプ隊"][:2] == ("ready", 1)
    assert states(session)["中央指揮隊"][:2] == ("critical", 1)

    session.add(
        ComplianceFinding(
            device_id=a3.id, rule="passcode_missing", severity="critical", message="no passcode", details={}
        )
    )
    session.commit()
    assert states(session)["救急3隊"][0] == "critical"
    assert last_event(session, tree.ambulance3.id).cause_en.startswith(
        "Ambulance 3: critical — not compliant: passcode_missing"
    )

    set_plan(
        session,
        tree.ambulance3,
        {
            "required_working": 1,
            "max_seen_minutes": 60,
            "min_battery_percent": 10,
            "ignored_rules": ["passcode_missing"],
        },
        actor=ADMIN,
    )
    session.commit()
    assert states(session)["救急3隊"][0] == "ready"
    assert plan_for(session, tree.ambulance3).ignored_rules == ("passcode_missing",)
    assert session.scalars(select(AuditEvent).where(AuditEvent.action == "continuity.plan_updated")).one()


def test_plan_only_for_units_and_validated(session, world):
    tree = world[0]
    with pytest.raises(PlanError) as station:
        set_plan(
            session,
            tree.central,
            {"required_working": 1, "max_seen_minutes": 60, "min_battery_percent": 0},
            actor=ADMIN,
        )
    assert "org_unit_id" in station.value.fields
    with pytest.raises(PlanError) as bad:
        set_plan(session, tree.ambulance3, {"required_working": "two"}, actor=ADMIN)
    assert "required_working" in bad.value.fields


def test_schedule_notices_tablets_that_went_silent(session, session_factory, settings, world, frozen_clock):
    tree = world[0]
    frozen_clock.advance(hours=25)
    result = readiness_job(JobContext(session_factory, settings, "test"))
    assert result["changes"] == 2  # 救急3隊 and 中央指揮隊 (the others were critical already)
    assert states(session)["救急3隊"] == ("critical", 0, 1, 0)
    assert last_event(session, tree.ambulance3.id).payload["missing"][0]["reasons"][0]["code"] == "not_seen"
    assert readiness_job(JobContext(session_factory, settings, "test"))["changes"] == 0  # idempotent


def _published_for_a_station(session, station) -> None:
    """A published row left for what is a station now (it was a unit): a recompute drops it."""
    session.add(
        UnitReadinessState(org_unit_id=station.id, state="ready", working=1, required=1, spares_available=0)
    )
    session.commit()


def test_the_schedule_recomputes_a_thousand_units_at_a_time_like_one_pass(
    session, session_factory, settings, world, frozen_clock
):
    """The scheduled recompute takes the units in transactions of a bounded number (memory: a
    prefecture's 14,000 units in one pass held 349 MB); one unit per transaction records what one
    pass would, and the row of a unit that is no longer one (here: a station's) is dropped."""
    tree = world[0]
    _published_for_a_station(session, tree.central)
    frozen_clock.advance(hours=25)
    assert recompute_every_unit(session_factory, per_transaction=1) == (2, False)
    assert states(session)["救急3隊"] == ("critical", 0, 1, 0)
    assert states(session)["中央指揮隊"][0] == "critical"
    assert session.get(UnitReadinessState, tree.central.id) is None
    assert readiness_job(JobContext(session_factory, settings, "test"))["changes"] == 0  # one pass agrees


def test_the_schedule_bounds_the_tablets_of_one_transaction(session, session_factory, world, frozen_clock):
    """Units of many tablets go fewer to a transaction (100 units of 1,000 tablets were one
    transaction of 100,000 tablets, 310 MB); a unit bigger than the bound goes alone."""
    frozen_clock.advance(hours=25)
    transactions = 0

    def counting() -> bool:
        nonlocal transactions
        transactions += 1
        return False

    # By id: 救急3隊 (1 tablet) with 中央ポンプ隊 (none); 中央指揮隊 (2) alone; 北救急隊 (none).
    changes, stopped = recompute_every_unit(session_factory, tablets_per_transaction=1, should_stop=counting)
    assert (changes, stopped, transactions - 1) == (2, False, 3)  # the last one found no unit
    transactions = 0
    frozen_clock.advance(hours=1)
    assert recompute_every_unit(session_factory, should_stop=counting) == (0, False)
    assert transactions - 1 == 1
    assert states(session)["救急3隊"] == ("critical", 0, 1, 0)
    assert states(session)["中央指揮隊"][0] == "critical"


def test_units_are_parted_by_their_tablets_in_order():
    counted = [(1, 3), (2, 0), (3, 1), (4, 5), (5, 1), (6, 1)]
    assert list(tablet_bounded_parts(counted, 4)) == [[1, 2, 3], [4], [5, 6]]
    assert list(tablet_bounded_parts(counted, 100)) == [[1, 2, 3, 4, 5, 6]]
    assert list(tablet_bounded_parts([], 4)) == []


def test_a_recompute_in_parts_records_what_one_pass_would(session, world, frozen_clock):
    """The drain after a fleet check is asked for every unit: computed a part at a time (the
    memory of one part's tablets), with the rows of what is no longer a unit dropped as well."""
    tree = world[0]
    _published_for_a_station(session, tree.central)
    frozen_clock.advance(hours=25)
    events = recompute_in_parts(session, None, most_tablets=1)
    session.commit()
    assert sorted(e.org_unit_id for e in events) == sorted([tree.ambulance3.id, tree.command.id])
    assert states(session)["救急3隊"] == ("critical", 0, 1, 0)
    assert session.get(UnitReadinessState, tree.central.id) is None
    assert recompute(session) == []  # one pass finds nothing left to record
    # Asked for named units, one of which is not a unit: that one's row goes too.
    _published_for_a_station(session, tree.north)
    assert recompute_in_parts(session, {tree.north.id, tree.pump.id, tree.command.id}, most_tablets=1) == []
    session.commit()
    assert session.get(UnitReadinessState, tree.north.id) is None


def test_the_schedule_told_to_stop_ends_between_its_transactions(
    session, session_factory, world, frozen_clock
):
    frozen_clock.advance(hours=25)
    asked = 0

    def stop_after_two() -> bool:
        nonlocal asked
        asked += 1
        return asked > 2

    changes, stopped = recompute_every_unit(session_factory, per_transaction=1, should_stop=stop_after_two)
    assert stopped and changes <= 2
    assert len({u for u, s in states(session).items() if s[0] == "critical"}) < 4


def test_check_ins_of_a_busy_fleet_write_nothing(session, world, frozen_clock):
    _, a3, *_ = world
    before = session.scalars(select(ReadinessEvent)).all()
    for _ in range(3):
        frozen_clock.advance(minutes=1)
        a3.last_seen_at = clock.now()
        session.commit()
    assert session.scalars(select(ReadinessEvent)).all() == before


def test_rollups_history_and_scope(session, world):
    tree = world[0]
    units = current_readiness(session)
    stations = {r.name_ja: r for r in station_rollup(session, units)}
    assert stations["中央署"].state == "critical" and stations["中央署"].counts == {
        "ready": 2,
        "degraded": 0,
        "critical": 1,
    }
    assert stations["北署"].state == "critical"
    [hq] = hq_rollup(session, units)
    assert hq.org_unit_id == tree.hq.id and hq.counts == {"ready": 2, "degraded": 0, "critical": 2}
    scoped = current_readiness(session, {tree.north.id, tree.north_ambulance.id})
    assert [u.unit_name_ja for u in scoped] == ["北救急隊"]
    history = readiness_history(session, unit_id=tree.north_ambulance.id)
    assert [e.state for e in history] == ["critical"]
    assert len(readiness_history(session)) == len(session.scalars(select(UnitReadinessState)).all())


def test_a_spare_reported_lost_is_no_help_to_the_units_of_its_station(session, world):
    tree = world[0]
    spare = tablet(session, tree.central, "予備機")
    mark_spare(session, spare, actor=ADMIN)
    session.commit()
    assert states(session)["中央ポンプ隊"] == ("degraded", 0, 1, 1)
    open_incident(session, spare, {"caller_name": "中央署"}, actor=OPERATOR)
    session.commit()
    assert states(session)["中央ポンプ隊"] == ("critical", 0, 1, 0)
    assert last_event(session, tree.pump.id).cause_code == "spare_gone"
    assert states(session)["北救急隊"] == ("critical", 0, 1, 0)  # 北署's units never counted it
