"""Continuity console: the dashboard (units by state, what is missing and why, spares, history,
printable), the plan page and the spare swap reached from a hotline incident — with real data
through the continuity services and the hotline's incident service."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from commands.incidents import open_incident
from mdm.ground import clock
from mdm.ground.models import AuditEvent, Device, IncidentStep, SpareDevice
from mdm.services.continuity import current_readiness, mark_spare, plan_for
from tests.continuity.helpers import ADMIN, OPERATOR, build_tree, tablet
from tests.web.helpers import csrf_of, login, make_user


def _section(html: str, element_id: str) -> str:
    match = re.search(rf'<(section|tr|p|dd|table)[^>]*id="{element_id}".*?</\1>', html, re.S)
    assert match, f"no #{element_id} on the page"
    return match.group(0)


@pytest.fixture
def shift(app: Any, session_factory: Any) -> dict[str, Any]:
    """中央署 with 救急3隊 (one tablet, lost), 中央指揮隊 (two tablets), a spare; 北署 without spares."""
    with session_factory() as session:
        tree = build_tree(session)
        a3 = tablet(session, tree.ambulance3, "救急3 iPad")
        tablet(session, tree.command, "指揮 iPad 1")
        tablet(session, tree.command, "指揮 iPad 2")
        spare = tablet(session, tree.central, "予備機 1")
        spare.last_seen_at = clock.now() - timedelta(days=2)  # on the shelf, switched off
        mark_spare(session, spare, actor=ADMIN, note="中央署 予備棚")
        session.commit()
        incident = open_incident(session, a3, {"caller_name": "救急3隊 隊長"}, actor=OPERATOR)
        session.commit()
        return {
            "a3": tree.ambulance3.id,
            "north": tree.north_ambulance.id,
            "central": tree.central.id,
            "command": tree.command.id,
            "spare": spare.id,
            "lost": a3.id,
            "incident": incident.id,
        }


@pytest.fixture
def users(session_factory: Any, settings: Any) -> dict[str, Any]:
    with session_factory() as session:
        return {
            role: make_user(session, settings, f"{role}-cont", role)
            for role in ("admin", "operator", "auditor", "approver")
        }


def _client(app: Any, account: Any) -> Any:
    client = app.test_client()
    login(client, account)
    return client


def test_dashboard_shows_units_by_state_with_causes_spares_and_history(app, shift, users):
    client = _client(app, users["operator"])
    page = client.get("/console/continuity")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="nav-continuity"' in html
    assert "css/continuity.css" in html
    # 救急3隊 lost its only tablet and a spare waits at 中央署: degraded, with the reason.
    degraded = _section(html, "units-degraded")
    a3_row = _section(degraded, f"unit-{shift['a3']}")
    assert "救急3隊" in a3_row and "0 / 1" in a3_row
    assert f"端末紛失 (インシデント {shift['incident']})" in a3_row
    assert f"/console/continuity/swap?unit_id={shift['a3']}" in a3_row
    # 北救急隊 has no tablet and 北署 no spare: critical, saying what the plan misses.
    critical = _section(html, "units-critical")
    north_row = _section(critical, f"unit-{shift['north']}")
    assert "計画で必要な端末のうち1台がこの隊に割り当てられていません" in north_row
    assert "/console/continuity/swap" not in north_row  # nothing to swap in
    assert f'id="unit-{shift["command"]}"' in _section(html, "units-ready")
    # State is carried by shape and text, not colour alone.
    assert "▲</span> 縮退" in html and "✖</span> 危機" in html and "✓</span> 運用可" in html
    assert re.search(r'id="count-critical"><span class="n">1</span>', html)  # 北救急隊
    assert re.search(r'id="count-degraded"><span class="n">2</span>', html)  # 救急3隊, 中央ポンプ隊
    spares = _section(html, f"spares-{shift['central']}")
    assert "予備機 1" in spares and ">1<" in spares
    history = _section(html, "history")
    assert "救急3隊: 縮退 — 端末紛失" in history
    station = _section(html, f"station-{shift['central']}")
    assert "中央署" in station
    assert "system" not in re.findall(r'id="(system)"', html)  # backup/APNs panel: settings.read only


def test_dashboard_in_english_and_for_admins_with_system_state(app, shift, users):
    client = _client(app, users["admin"])
    html = client.get("/console/continuity").get_data(as_text=True)
    backup = _section(html, "system-backup")
    assert "無効（HIKESHI_BACKUP_DIR と HIKESHI_BACKUP_KEY_FILE を設定）" in backup
    client.set_cookie("hikeshi_lang", "en")
    english = client.get("/console/continuity").get_data(as_text=True)
    assert "Continuity: unit readiness" in english
    assert f"tablet lost (incident {shift['incident']})" in english
    assert "Ambulance 3" in english and "▲</span> Degraded" in english


def test_roles_without_readiness_read_see_neither_link_nor_page(app, shift, users):
    client = _client(app, users["approver"])
    assert 'id="nav-continuity"' not in client.get("/console/dashboard").get_data(as_text=True)
    assert client.get("/console/continuity").status_code == 403
    assert client.get(f"/console/continuity/swap?unit_id={shift['a3']}").status_code == 403


def test_print_stylesheet_is_a4_black_and_white(app, client):
    css = client.get("/console/static/css/continuity.css").get_data(as_text=True)
    assert "@media print" in css and "size: A4" in css
    print_rules = css[css.index("@media print") :]
    assert "#000" in print_rules and "display: none" in print_rules
    for colour in ("#009e73", "#e69f00", "#d55e00"):  # Okabe-Ito on screen
        assert colour in css


def test_spare_swap_from_the_incident_link_until_the_unit_is_ready(app, shift, users, session):
    client = _client(app, users["operator"])
    path = f"/console/continuity/swap?unit_id={shift['a3']}&incident_id={shift['incident']}"
    page = client.get(path)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f"インシデント {shift['incident']} の次の対応" in html
    assert f'id="spare-{shift["spare"]}"' in html and "予備機 1" in html
    response = client.post(
        "/console/continuity/swap",
        data={
            "unit_id": shift["a3"],
            "incident_id": shift["incident"],
            "spare_device_id": shift["spare"],
            "csrf_token": csrf_of(html),
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/console/hotline/incidents/{shift['incident']}")
    session.rollback()
    session.expire_all()
    spare = session.get(Device, shift["spare"])
    assert spare.org_unit_id == shift["a3"]
    assert session.scalars(select(SpareDevice)).one().swapped_to_unit_id == shift["a3"]
    steps = session.scalars(select(IncidentStep).where(IncidentStep.incident_id == shift["incident"])).all()
    assert "spare_swapped" in [s.action for s in steps]
    assert session.scalars(select(AuditEvent).where(AuditEvent.action == "continuity.spare_swapped")).one()
    flashed = client.get("/console/continuity").get_data(as_text=True)
    assert "予備機 予備機 1 を 救急3隊 に配置しました" in flashed
    a3_row = _section(_section(flashed, "units-degraded"), f"unit-{shift['a3']}")
    assert "予備機・接続待ち" in a3_row

    # The spare checks in working: 救急3隊 is ready again, and the dashboard says so.
    # Written through the app's own factory (BEGIN IMMEDIATE on SQLite): this test's deferred
    # session would read first and then fail to write whenever a background thread of the app
    # (the outbox drain after the swap, the audit sealer) commits in between: SQLite refuses a
    # write from a stale read snapshot, without waiting.
    with app.extensions["hikeshi"].session_factory() as writer:
        writer.get(Device, shift["spare"]).last_seen_at = clock.now()
        writer.commit()
    html = client.get("/console/continuity").get_data(as_text=True)
    assert f'id="unit-{shift["a3"]}"' in _section(html, "units-ready")
    # The stock of spares at 中央署 is now empty.
    assert "この隊の署に配置できる予備機がありません" in client.get(path).get_data(as_text=True)


def test_swap_refusals(app, shift, users):
    auditor = _client(app, users["auditor"])
    page = auditor.get(f"/console/continuity/swap?unit_id={shift['a3']}")
    assert page.status_code == 200
    assert "あなたの役割では予備機を入れ替えられません" in page.get_data(as_text=True)
    denied = auditor.post(
        "/console/continuity/swap",
        data={"unit_id": shift["a3"], "spare_device_id": shift["spare"], "csrf_token": csrf_of(page.data)},
    )
    assert denied.status_code == 403
    operator = _client(app, users["operator"])
    assert operator.get("/console/continuity/swap").status_code == 400
    assert operator.get("/console/continuity/swap?unit_id=abc").status_code == 400
    assert operator.get(f"/console/continuity/swap?unit_id={shift['central']}").status_code == 404
    unknown_incident = f"/console/continuity/swap?unit_id={shift['a3']}&incident_id=99999"
    assert operator.get(unknown_incident).status_code == 404
    # A tablet that is not a spare: refused with the reason, nothing moved.
    html = operator.get(f"/console/continuity/swap?unit_id={shift['north']}").get_data(as_text=True)
    refused = operator.post(
        "/console/continuity/swap",
        data={"unit_id": shift["north"], "spare_device_id": shift["lost"], "csrf_token": csrf_of(html)},
    )
    assert refused.status_code == 200 and 'id="swap-error"' in refused.get_data(as_text=True)


def test_plan_page_edits_validates_and_resets(app, shift, users, session):
    admin = _client(app, users["admin"])
    path = f"/console/continuity/units/{shift['command']}/plan"
    page = admin.get(path)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "この隊は隊種別の既定の計画に従っています" in html
    assert 'name="required_working" type="number" min="0" max="50" value="2"' in html
    form = {
        "required_working": "3",
        "max_seen_minutes": "60",
        "min_battery_percent": "30",
        "require_compliant": "on",
        "ignored_rules": ["os_outdated"],
        "csrf_token": csrf_of(html),
    }
    saved = admin.post(path, data=form)
    assert saved.status_code == 302
    session.rollback()
    session.expire_all()
    from mdm.ground.models import OrgUnit

    plan = plan_for(session, session.get(OrgUnit, shift["command"]))
    assert (plan.required_working, plan.max_seen_minutes, plan.ignored_rules) == (3, 60, ("os_outdated",))
    state = {u.unit_id: u for u in current_readiness(session)}[shift["command"]]
    assert (state.state, state.working, state.required) == ("degraded", 2, 3)  # a spare waits at 中央署
    after = admin.get(path).get_data(as_text=True)
    assert "中央指揮隊 の業務継続計画を保存しました" in after and "この隊には個別の計画があります" in after

    bad = admin.post(path, data={**form, "required_working": "abc", "csrf_token": csrf_of(after)})
    assert bad.status_code == 200 and "整数を入力してください" in bad.get_data(as_text=True)
    out_of_range = admin.post(path, data={**form, "max_seen_minutes": "1", "csrf_token": csrf_of(after)})
    body = out_of_range.get_data(as_text=True)
    assert out_of_range.status_code == 200 and 'value="1"' in body and 'class="error"' in body
    session.rollback()
    session.expire_all()
    assert plan_for(session, session.get(OrgUnit, shift["command"])).max_seen_minutes == 60  # unchanged

    reset = admin.post(f"{path}/reset", data={"csrf_token": csrf_of(after)})
    assert reset.status_code == 302
    session.rollback()
    session.expire_all()
    assert plan_for(session, session.get(OrgUnit, shift["command"])).is_default

    operator = _client(app, users["operator"])
    read_only = operator.get(path).get_data(as_text=True)
    assert "<fieldset disabled>" in read_only and "計画を保存" not in read_only
    assert operator.post(path, data={**form, "csrf_token": csrf_of(read_only)}).status_code == 403
    assert operator.get(f"/console/continuity/units/{shift['central']}/plan").status_code == 404
