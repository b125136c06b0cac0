"""GET /api/v1/readiness and the continuity board a page at a time (issue 23: 14,000 units in one
answer took 32 s and 15 MB): every unit exactly once across the pages, rollups and counts over
every unit whatever the page, filters by org unit and state, bad paging named, and the same
number of SQL statements at N and at 3N units."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import delete

from mdm.ground.audit import SYSTEM
from mdm.ground.models import OrgUnit, UnitReadinessState
from mdm.services.continuity import recompute
from mdm.services.orgunits import create_unit
from tests.continuity.helpers import build_tree, tablet
from tests.scheduler.test_fleet_statement_counts import counted
from tests.web.helpers import bearer, login, make_token, make_user


def _add_units(session: Any, station: OrgUnit, count: int, start: int) -> list[OrgUnit]:
    """`count` pump units under `station`, each with one working tablet (enough: ready)."""
    units = []
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
        tablet(session, unit, f"pump {i}")
        units.append(unit)
    return units


@pytest.fixture
def fleet(app: Any, session_factory: Any) -> dict[str, Any]:
    with session_factory() as session:
        tree = build_tree(session)
        tablet(session, tree.ambulance3, "救急3 iPad")
        _add_units(session, tree.north, 5, 0)
        recompute(session)
        session.commit()
        return {
            "hq": tree.hq.id,
            "central": tree.central.id,
            "north": tree.north.id,
            "a3": tree.ambulance3.id,
            "token": bearer(make_token(session, "dispatch")),
            "scoped": bearer(make_token(session, "operator", org_unit_id=tree.central.id)),
        }


def _all_pages(
    client: Any, headers: dict[str, str], query: str = ""
) -> tuple[list[dict[str, Any]], list[Any]]:
    first = client.get(f"/api/v1/readiness?per_page=3{query}", headers=headers).get_json()
    pages = [first]
    for n in range(2, -(-first["total"] // first["per_page"]) + 1):
        response = client.get(f"/api/v1/readiness?per_page=3&page={n}{query}", headers=headers)
        assert response.status_code == 200
        pages.append(response.get_json())
    return pages, [u for p in pages for u in p["units"]]


def test_every_unit_is_on_exactly_one_page_in_code_order(client, fleet):
    pages, units = _all_pages(client, fleet["token"])
    codes = [u["unit_code"] for u in units]
    # 4 units of the tree (A3, C1, N1, P1) and X000…X004, each once, in code order.
    assert codes == sorted(codes) and len(codes) == len(set(codes)) == 9 == pages[0]["total"]
    assert [len(p["units"]) for p in pages] == [3, 3, 3]
    for page in pages:
        # Rollups count every unit whatever the page; unit_ids name this page's units only.
        assert sum(page["counts"].values()) == 9
        assert sum(page["hq"][0]["counts"].values()) == 9
        assert sorted(i for r in page["hq"] for i in r["unit_ids"]) == sorted(
            u["unit_id"] for u in page["units"]
        )
        north = next(s for s in page["stations"] if s["org_unit_id"] == fleet["north"])
        # 北救急隊 has no tablet (critical, no spare at 北署); the pump units are ready.
        assert north["counts"] == {"critical": 1, "degraded": 0, "ready": 5} and north["state"] == "critical"
    assert pages[0]["last_event_id"] > 0 and pages[0]["per_page"] == 3
    # Past the last page: an empty page, the same total.
    beyond = client.get("/api/v1/readiness?per_page=3&page=4", headers=fleet["token"]).get_json()
    assert beyond["units"] == [] and beyond["total"] == 9


def test_default_page_size_and_filters(client, fleet):
    whole = client.get("/api/v1/readiness", headers=fleet["token"]).get_json()
    assert whole["per_page"] == 100 and whole["page"] == 1 and len(whole["units"]) == 9
    _pages, north = _all_pages(client, fleet["token"], f"&unit_id={fleet['north']}")
    assert {u["unit_code"] for u in north} == {"N1", "X000", "X001", "X002", "X003", "X004"}
    ready = client.get("/api/v1/readiness?state=ready", headers=fleet["token"]).get_json()
    assert ready["units"] and all(u["state"] == "ready" for u in ready["units"])
    assert ready["total"] == len(ready["units"]) == ready["counts"]["ready"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("per_page=0", "per_page"),
        ("per_page=501", "per_page"),
        ("page=0", "page"),
        ("page=abc", "page"),
        ("state=burning", "state"),
        ("unit_id=-1", "unit_id"),
    ],
)
def test_bad_paging_is_refused_naming_the_field(client, fleet, query, field):
    response = client.get(f"/api/v1/readiness?{query}", headers=fleet["token"])
    assert response.status_code == 400
    assert field in response.get_json()["error"]["fields"]


def test_a_scoped_token_pages_through_its_units_only(client, fleet):
    _pages, units = _all_pages(client, fleet["scoped"])
    assert {u["unit_code"] for u in units} == {"A3", "C1", "P1"}
    response = client.get(f"/api/v1/readiness?unit_id={fleet['north']}", headers=fleet["scoped"])
    assert response.status_code == 404


def test_units_never_evaluated_are_computed_for_their_page(client, session_factory, fleet):
    with session_factory() as session:
        north = session.get(OrgUnit, fleet["north"])
        [late] = _add_units(session, north, 1, 50)
        session.commit()  # the device hook evaluates it at commit: drop its row afterwards
        session.execute(delete(UnitReadinessState).where(UnitReadinessState.org_unit_id == late.id))
        session.commit()
    page = client.get("/api/v1/readiness?per_page=100", headers=fleet["token"]).get_json()
    mine = next(u for u in page["units"] if u["unit_code"] == "X050")
    assert mine["state"] == "ready" and mine["event_id"] is None and mine["working"] == 1
    assert page["total"] == 10 and sum(page["counts"].values()) == 10


def test_same_statements_at_n_and_3n_units(app, client, session_factory, fleet):
    engine = app.extensions["hikeshi"].engine

    def statements() -> int:
        client.get("/api/v1/readiness?per_page=4", headers=fleet["token"])  # warm (token last-used)
        with counted(engine) as seen:
            response = client.get("/api/v1/readiness?per_page=4", headers=fleet["token"])
        assert response.status_code == 200 and len(response.get_json()["units"]) == 4
        return seen.count

    at_n = statements()
    with session_factory() as session:
        _add_units(session, session.get(OrgUnit, fleet["north"]), 18, 100)
        recompute(session)
        session.commit()
    assert statements() == at_n


# -- the continuity board ----------------------------------------------------------------------


def test_the_board_pages_worst_first_and_narrows_to_a_station(
    app, session_factory, settings, fleet, monkeypatch
):
    monkeypatch.setattr("web.console.continuity.UNITS_PER_PAGE", 4)
    with session_factory() as session:
        operator = make_user(session, settings, "board-op", "operator")
    browser = app.test_client()
    login(browser, operator)
    first = browser.get("/console/continuity").get_data(as_text=True)
    rows = re.findall(r'<tr id="unit-(\d+)" class="rd-row-(\w+)"', first)
    # Worst first: 中央指揮隊, 北救急隊, 中央ポンプ隊 (critical), then 救急3隊 (ready, code A3).
    assert [state for _, state in rows] == ["critical", "critical", "critical", "ready"]
    assert int(rows[3][0]) == fleet["a3"]
    # The tiles count every unit, not the page's.
    assert re.search(r'id="count-ready"><span class="n">6</span>', first)
    assert "1 / 3 ページ" in first
    last = browser.get("/console/continuity?page=3").get_data(as_text=True)
    assert re.findall(r'<tr id="unit-(\d+)" class="rd-row-(\w+)"', last) == [
        (str(next(iter(_ids(session_factory, ("X004",))))), "ready")
    ]
    central = browser.get(f"/console/continuity?unit_id={fleet['central']}").get_data(as_text=True)
    assert {int(i) for i, _ in re.findall(r'<tr id="unit-(\d+)" class="rd-row-(\w+)"', central)} == {
        fleet["a3"],
        *_ids(session_factory, ("C1", "P1")),
    }
    bad = browser.get("/console/continuity?page=x&unit_id=999999")
    assert bad.status_code == 200
    assert bad.get_data(as_text=True).count('role="alert"') == 2


def _ids(session_factory: Any, codes: tuple[str, ...]) -> set[int]:
    with session_factory() as session:
        return {u.id for u in session.query(OrgUnit).filter(OrgUnit.code.in_(codes))}
