"""The device list's unit drop-down stays bounded at thousands of units (issue 23: listing 14,000
took 0.8 s on every page): above the limit it offers the stations and the units matching what
was typed in the field beside it, without JavaScript; the hotline search makes the same number of
statements for one hit or many."""

from __future__ import annotations

import re
from typing import Any

import pytest

from commands.incidents.views import find_devices
from mdm.ground.audit import SYSTEM
from mdm.ground.models import OrgUnit
from mdm.services.orgunits import create_unit
from tests.continuity.helpers import build_tree, tablet
from tests.scheduler.test_fleet_statement_counts import counted
from tests.web.helpers import login, make_user
from web.rbac import Principal
from web.unit_choices import unit_choices

ADMIN = Principal("user", 1, "admin", "admin")


def _add_units(session: Any, station: OrgUnit, count: int, start: int) -> None:
    for i in range(start, start + count):
        unit = create_unit(
            session,
            {
                "kind": "unit",
                "unit_type": "pump",
                "name_ja": f"第{i}ポンプ隊",
                "code": f"X{i:03d}",
                "parent_id": station.id,
            },
            actor=SYSTEM,
        )
        tablet(session, unit, f"FD-{i:04d} pump")
    session.commit()


@pytest.fixture
def tree(session: Any) -> Any:
    found = build_tree(session)
    _add_units(session, found.north, 6, 0)
    return found


def _options(html: str) -> list[str]:
    select = re.search(r'<select id="device-unit-id" name="unit_id">(.*?)</select>', html, re.S)
    assert select, "no unit drop-down on the page"
    return re.findall(r"<option value=\"\d+\"[^>]*>([^<]*)</option>", select.group(1))


def test_a_small_tree_is_listed_whole(app, settings, session_factory, tree):
    with session_factory() as session:
        operator = make_user(session, settings, "dd-small", "operator")
    browser = app.test_client()
    login(browser, operator)
    html = browser.get("/console/devices").get_data(as_text=True)
    assert len(_options(html)) == 13 and 'name="unit_q"' not in html


def test_a_large_tree_offers_stations_and_what_was_typed(app, settings, session_factory, tree, monkeypatch):
    monkeypatch.setattr("web.unit_choices.LIMIT", 5)
    with session_factory() as session:
        operator = make_user(session, settings, "dd-large", "operator")
        x002 = session.query(OrgUnit).filter_by(code="X002").one().id
    browser = app.test_client()
    login(browser, operator)
    html = browser.get("/console/devices").get_data(as_text=True)
    # HQ and the two stations only; a labelled search field (Japanese first) to find a unit.
    assert [o.split(" [")[0] for o in _options(html)] == ["火消し消防本部", "中央署", "北署"]
    assert re.search(r'<label for="device-unit-q">部隊を検索 \(コードまたは名称\)</label>', html)
    typed = browser.get("/console/devices?unit_q=x00").get_data(as_text=True)
    # What was typed first (at most the limit, then "type more"), the stations after.
    assert _options(typed) == [f"第{i}ポンプ隊 [X00{i}]" for i in range(5)]
    assert "入力を続けて" in typed
    exact = browser.get("/console/devices?unit_q=X005").get_data(as_text=True)
    assert _options(exact)[0] == "第5ポンプ隊 [X005]" and len(_options(exact)) == 4
    # The chosen unit stays chosen (and filters the list) without anything typed.
    chosen = browser.get(f"/console/devices?unit_id={x002}").get_data(as_text=True)
    assert f'<option value="{x002}" selected>第2ポンプ隊 [X002]</option>' in chosen
    assert "FD-0002 pump" in chosen and "FD-0003 pump" not in chosen
    too_long = browser.get("/console/devices?unit_q=" + "x" * 101)
    assert too_long.status_code == 200 and 'role="alert"' in too_long.get_data(as_text=True)


def test_a_scoped_user_is_offered_its_own_units_only(session, tree):
    scope = frozenset(
        {tree.north.id, *(u.id for u in session.query(OrgUnit).filter(OrgUnit.parent_id == tree.north.id))}
    )
    scoped = Principal("user", 2, "north", "operator", org_unit_id=tree.north.id, scope_unit_ids=scope)
    found = unit_choices(session, scoped, "隊", limit=3)
    assert found.searchable and found.more and {u.id for u in found.units} <= scope
    assert all(u.parent_id == tree.north.id for u in found.units)


def test_the_drop_down_makes_the_same_statements_at_n_and_3n_units(session, clean_database, tree):
    def statements() -> int:
        session.commit()  # each count starts its own transaction (SQLite's BEGIN is a statement)
        session.expunge_all()
        with counted(clean_database) as seen:
            found = unit_choices(session, ADMIN, "ポンプ", limit=4)
        assert found.searchable and len(found.units) == 4
        return seen.count

    at_n = statements()
    _add_units(session, tree.central, 12, 100)
    assert statements() == at_n


def test_the_hotline_search_makes_the_same_statements_for_one_hit_or_many(session, clean_database, tree):
    def statements(text: str, hits: int) -> int:
        session.commit()  # each count starts its own transaction (SQLite's BEGIN is a statement)
        session.expunge_all()
        with counted(clean_database) as seen:
            found = find_devices(session, text, unit_ids=None)
        assert len(found) == hits and all(
            h.unit_path and h.unit_path.startswith("火消し消防本部 / 北署 / ") for h in found
        )
        return seen.count

    assert statements("FD-0003", 1) <= 6
    many = statements("pump", 6)
    _add_units(session, tree.north, 12, 100)
    assert statements("pump", 18) == many
