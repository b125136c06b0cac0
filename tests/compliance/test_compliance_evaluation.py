"""Evaluation on the real database: findings open with an alert, close when the condition
clears, reopen as a new episode; device state is the worst open finding; unit policies inherit."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mdm.ground.models import Alert, ComplianceFinding, OrgUnit, Severity
from mdm.services.compliance.evaluation import (
    device_compliance,
    devices_by_compliance,
    evaluate_fleet,
    open_findings,
)
from mdm.services.compliance.sources import APP_POLICY_SOURCES, AppPolicy
from mdm.services.unit_policy import policy_for, set_unit_policy
from tests.inventory.helpers import ADMIN, answer, apps
from tests.support.factories import make_device


@pytest.fixture
def block_game(session_factory):
    """The app rules a profile assignment would declare: the game is blocked everywhere."""

    def source(session, device):
        return AppPolicy(blocked=frozenset({"com.example.game"}))

    APP_POLICY_SOURCES.connect(session_factory, source)


def test_unauthorized_app_opens_alerts_and_closes(session, frozen_clock, block_game):
    device = make_device(session)
    answer(session, device, "InstalledApplicationList", apps(("com.example.game", "Game", "1")))
    [finding] = open_findings(session, device.id)
    assert (finding.rule, finding.subject, finding.severity) == (
        "unauthorized_app",
        "com.example.game",
        "critical",
    )
    [alert] = session.scalars(select(Alert)).all()
    assert alert.finding_id == finding.id and alert.device_id == device.id
    assert "com.example.game" in alert.title and alert.kind == "compliance.unauthorized_app"
    assert device_compliance(session, device.id) == Severity.CRITICAL
    # Seen again: same finding, no second alert.
    frozen_clock.advance(hours=4)
    answer(session, device, "InstalledApplicationList", apps(("com.example.game", "Game", "1")))
    assert len(session.scalars(select(Alert)).all()) == 1
    assert session.get(ComplianceFinding, finding.id).last_seen_at == frozen_clock.current
    frozen_clock.advance(hours=4)
    answer(session, device, "InstalledApplicationList", apps(("jp.fire.triage", "Triage", "1")))
    assert open_findings(session, device.id) == []
    assert session.get(ComplianceFinding, finding.id).closed_at == frozen_clock.current
    assert device_compliance(session, device.id) == Severity.OK
    # It comes back: a new episode and a new alert.
    answer(session, device, "InstalledApplicationList", apps(("com.example.game", "Game", "1")))
    assert len(session.scalars(select(ComplianceFinding)).all()) == 2
    assert len(session.scalars(select(Alert)).all()) == 2


def test_worst_finding_is_the_state_and_lists_filter_on_it(session, frozen_clock):
    bad, good = make_device(session), make_device(session)
    answer(session, bad, "SecurityInfo", {"SecurityInfo": {"PasscodePresent": False}})
    answer(
        session, good, "SecurityInfo", {"SecurityInfo": {"PasscodePresent": True, "PasscodeCompliant": True}}
    )
    assert device_compliance(session, bad.id) == Severity.CRITICAL
    frozen_clock.advance(hours=30)
    answer(
        session, bad, "SecurityInfo", {"SecurityInfo": {"PasscodePresent": True, "PasscodeCompliant": False}}
    )
    assert device_compliance(session, bad.id) == Severity.WARNING
    assert evaluate_fleet(session) == 2  # the good one has been offline 30 h now
    assert {f.rule for f in open_findings(session, good.id)} == {"offline_too_long"}
    assert [d.id for d in devices_by_compliance(session, [Severity.WARNING])] == [bad.id, good.id]
    assert devices_by_compliance(session, [Severity.CRITICAL]) == []


def test_unit_policy_inherits_down_the_tree(session):
    hq = OrgUnit(kind="hq", name_ja="消防本部")
    session.add(hq)
    session.flush()
    station = OrgUnit(kind="station", name_ja="中央消防署", parent_id=hq.id)
    session.add(station)
    session.flush()
    set_unit_policy(session, ADMIN, None, offline_limit_hours=48)
    set_unit_policy(session, ADMIN, hq.id, minimum_os_version="17.0", require_supervision=True)
    set_unit_policy(session, ADMIN, station.id, minimum_os_version="17.4")
    device = make_device(session)
    device.org_unit_id = station.id
    policy = policy_for(session, device)
    assert (policy.minimum_os_version, policy.require_supervision, policy.offline_limit_hours) == (
        "17.4",
        True,
        48,
    )
    with pytest.raises(ValueError, match="colour"):
        set_unit_policy(session, ADMIN, None, colour="red")
    answer(
        session, device, "DeviceInformation", {"QueryResponses": {"OSVersion": "17.2", "IsSupervised": False}}
    )
    assert {f.rule for f in open_findings(session, device.id)} == {"os_outdated", "not_supervised"}


def test_console_queries(session, frozen_clock, block_game):
    from mdm.services.compliance.queries import (
        compliance_summary,
        device_findings,
        unauthorized_app_identifiers,
    )

    device, fresh_device = make_device(session), make_device(session)
    answer(
        session,
        device,
        "InstalledApplicationList",
        apps(("com.example.game", "Game", "1"), ("a.b", "AB", "1")),
    )
    assert unauthorized_app_identifiers(session, device.id) == {"com.example.game"}
    assert compliance_summary(session) == {"ok": 1, "info": 0, "warning": 0, "critical": 1}
    answer(session, device, "InstalledApplicationList", apps(("a.b", "AB", "1")))
    assert device_findings(session, device.id) == []
    assert [f.rule for f in device_findings(session, device.id, include_closed=True)] == ["unauthorized_app"]
    assert [d.id for d in devices_by_compliance(session, [Severity.OK])] == [device.id, fresh_device.id]
