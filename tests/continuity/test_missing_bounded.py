"""A page of units carries at most MISSING_SHOWN missing tablets of each unit, worst first, and
their number (issue 23: 100 units of 1,000 tablets made one page 11.3 MB and 0.75 s); every one of
them is read for one unit, a page at a time, as the last readiness event published them. A change
among the tablets not shown is still a change, and the migration moves stored rows to this shape."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import select, text

from commands.incidents import open_incident
from mdm.ground import clock
from mdm.ground.models import Device, ReadinessEvent, UnitReadinessState
from mdm.services.continuity import recompute
from mdm.services.continuity.readiness import MISSING_SHOWN
from tests.continuity.helpers import OPERATOR, build_tree, tablet
from tests.scheduler.test_fleet_statement_counts import counted
from tests.support.migrations import database_at
from tests.web.helpers import bearer, login, make_token, make_user

TABLETS = MISSING_SHOWN + 5


@pytest.fixture
def crowded(app: Any, session_factory: Any) -> dict[str, Any]:
    """救急3隊 with TABLETS tablets none of which counts: all unseen for two days, the last one
    (by name) also reported lost."""
    with session_factory() as session:
        tree = build_tree(session)
        devices = [tablet(session, tree.ambulance3, f"t{i:02d}") for i in range(TABLETS)]
        for device in devices:
            device.last_seen_at = clock.now() - timedelta(days=2)
        session.flush()
        open_incident(session, devices[-1], {"caller_name": "救急3隊"}, actor=OPERATOR)
        recompute(session)
        session.commit()
        return {
            "unit": tree.ambulance3.id,
            "central": tree.central.id,
            "north": tree.north.id,
            "devices": [d.id for d in devices],
            "lost": devices[-1].id,
            "token": bearer(make_token(session, "dispatch")),
            "north_token": bearer(make_token(session, "operator", org_unit_id=tree.north.id)),
        }


def _unit_on_page(client: Any, crowded: dict[str, Any]) -> dict[str, Any]:
    found = client.get(f"/api/v1/readiness?unit_id={crowded['unit']}", headers=crowded["token"])
    assert found.status_code == 200
    [unit] = found.get_json()["units"]
    return dict(unit)


def test_a_page_of_units_shows_the_worst_missing_tablets_and_counts_the_rest(app, client, crowded):
    with counted(app.extensions["hikeshi"].engine) as statements:
        unit = _unit_on_page(client, crowded)
    assert unit["missing_total"] == TABLETS and len(unit["missing"]) == MISSING_SHOWN
    # The lost tablet leads although its name sorts last; the unseen ones follow by name.
    assert unit["missing"][0]["device_id"] == crowded["lost"]
    assert unit["missing"][0]["reasons"][0]["code"] == "lost"
    assert [m["name"] for m in unit["missing"][1:]] == [f"t{i:02d}" for i in range(MISSING_SHOWN - 1)]
    # The full list is not read for a page of units, whatever the unit's size.
    assert statements.texts and not any("missing_devices" in sql for sql in statements.texts)


def test_events_carry_the_same_bounded_list_and_the_total(client, crowded):
    events = client.get("/api/v1/readiness/events?after=0&limit=500", headers=crowded["token"]).get_json()
    [last] = [e for e in events["items"] if e["unit"]["id"] == crowded["unit"]][-1:]
    assert last["missing_total"] == TABLETS and len(last["missing"]) == MISSING_SHOWN
    assert last["missing"] == _unit_on_page(client, crowded)["missing"]


def test_every_missing_tablet_of_a_unit_a_page_at_a_time(client, crowded):
    unit = _unit_on_page(client, crowded)
    items: list[dict[str, Any]] = []
    for page in (1, 2, 3):
        found = client.get(
            f"/api/v1/readiness/units/{crowded['unit']}/missing?per_page=10&page={page}",
            headers=crowded["token"],
        )
        assert found.status_code == 200
        body = found.get_json()
        assert (body["total"], body["page"], body["per_page"]) == (TABLETS, page, 10)
        assert body["unit_id"] == crowded["unit"] and body["event_id"] == unit["event_id"]
        items += body["items"]
    assert sorted(m["device_id"] for m in items) == sorted(crowded["devices"])
    assert items[:MISSING_SHOWN] == unit["missing"]  # the same order as the page of units


def test_the_missing_list_refuses_what_it_cannot_answer(client, crowded):
    base = f"/api/v1/readiness/units/{crowded['unit']}/missing"
    too_many = client.get(f"{base}?per_page=501", headers=crowded["token"])
    assert too_many.status_code == 400 and "per_page" in too_many.get_json()["error"]["fields"]
    page_zero = client.get(f"{base}?page=0", headers=crowded["token"])
    assert page_zero.status_code == 400 and "page" in page_zero.get_json()["error"]["fields"]
    station = client.get(f"/api/v1/readiness/units/{crowded['central']}/missing", headers=crowded["token"])
    assert station.status_code == 404 and "only a unit" in station.get_json()["error"]["message"]
    # A token of another station does not learn that the unit exists.
    assert client.get(base, headers=crowded["north_token"]).status_code == 404
    assert client.get(base).status_code == 401


def test_a_change_among_the_tablets_not_shown_is_still_published(client, session, crowded):
    before = _unit_on_page(client, crowded)
    beyond = next(d for d in crowded["devices"] if d not in {m["device_id"] for m in before["missing"]})
    device = session.get(Device, beyond)
    device.last_seen_at = clock.now()
    session.flush()
    recompute(session, {crowded["unit"]})
    session.commit()
    after = _unit_on_page(client, crowded)
    assert after["event_id"] != before["event_id"] and after["missing_total"] == TABLETS - 1
    event = session.get(ReadinessEvent, after["event_id"])
    assert event is not None and event.cause_code == "device_working"
    row = session.scalars(
        select(UnitReadinessState).where(UnitReadinessState.org_unit_id == crowded["unit"])
    ).one()
    assert beyond not in {m["device_id"] for m in row.missing_devices}


def test_the_board_links_to_the_rest_and_the_unit_page_lists_them(client, session, crowded):
    login(client, make_user(session, client.application.extensions["hikeshi"].settings, "op1", "operator"))
    board = client.get("/console/continuity").get_data(as_text=True)
    link = f"/console/continuity/units/{crowded['unit']}/missing"
    assert link in board and f"ほか {TABLETS - MISSING_SHOWN} 台" in board
    page = client.get(link)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert all(f"/console/devices/{d}" in html for d in crowded["devices"])
    assert f"{TABLETS} 台" in html
    assert client.get(f"{link}?page=x").status_code == 400
    assert client.get(f"/console/continuity/units/{crowded['central']}/missing").status_code == 404


def test_the_migration_keeps_every_missing_tablet_and_bounds_the_page() -> None:
    missing = [
        {"device_id": i, "name": f"t{i:02d}", "serial_number": None, "reasons": [{"code": "not_seen"}]}
        for i in range(TABLETS)
    ]
    missing.append({"device_id": 99, "name": "z", "serial_number": None, "reasons": [{"code": "stolen"}]})
    details = {"missing": missing, "incoming": 0, "plan": {}, "station": {}}
    with database_at("0023") as (cfg, old):
        with old.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO org_units (id, kind, name_ja, created_at, updated_at)"
                    " VALUES (1, 'unit', '救急3隊', '2026-12-01', '2026-12-01')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO unit_readiness (org_unit_id, state, working, required, spares_available,"
                    " details, changed_at) VALUES (1, 'critical', 0, 2, 0, :d, '2026-12-01 00:00:00')"
                ),
                {"d": json.dumps(details)},
            )
        command.upgrade(cfg, "head")
        with old.connect() as conn:
            shown, every, total = conn.execute(
                text("SELECT details, missing_devices, missing_total FROM unit_readiness")
            ).one()
        command.downgrade(cfg, "0023")
        with old.connect() as conn:
            restored = conn.execute(text("SELECT details FROM unit_readiness")).scalar_one()
    shown, every, restored = json.loads(shown), json.loads(every), json.loads(restored)
    assert total == TABLETS + 1 and len(every) == TABLETS + 1
    assert [m["device_id"] for m in every] == [99, *range(TABLETS)]  # the stolen one first
    assert shown["missing"] == every[:MISSING_SHOWN] and shown["plan"] == {}
    assert sorted(m["device_id"] for m in restored["missing"]) == sorted(m["device_id"] for m in missing)
