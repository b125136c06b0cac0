"""The device list's search at fleet scale (issue 23): a search counts its matches up to a limit
and then says "more than", reads the matches once (page and count in one statement), makes the
same statements at N and 3N devices, and on PostgreSQL finds them through the trigram indexes of
migration 0014, not by reading every device. Counted and explained, not timed; the speed is
measured in tests/bench/bench_fleet_scale.py."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert, text

import web.queries
from mdm.ground import clock
from mdm.ground.models import Device, EnrollmentState
from tests.scheduler.test_fleet_statement_counts import counted
from web.queries import search_devices
from web.rbac import Principal

ADMIN = Principal("user", 1, "admin", "admin")


def _fleet(engine: Engine, start: int, count: int) -> None:
    """`count` enrolled tablets FD-<n>, DMQ<n>, 隊員<n>, the higher n the more recently seen."""
    now = clock.now()
    rows = [
        {
            "udid": str(uuid.UUID(int=n + 1)).upper(),
            "serial_number": f"DMQ{n:09d}",
            "asset_tag": f"FD-{n:06d}",
            "assigned_user": f"隊員{n:06d}",
            "platform": "apple",
            "device_name": f"救急タブレット {n}",
            "model_name": "iPad",
            "product_name": "iPad13,18",
            "enrollment_state": EnrollmentState.ENROLLED,
            "created_at": now,
            "last_seen_at": now - timedelta(minutes=100_000 - n),
        }
        for n in range(start, start + count)
    ]
    with engine.begin() as conn:
        conn.execute(insert(Device), rows)


def _search(session: Any, q: str, **more: Any) -> Any:
    session.expunge_all()
    return search_devices(session, ADMIN, {"q": q, "per_page": 5, "sort": "-last_seen", **more})


def test_a_search_counts_up_to_the_limit_then_says_more(session, clean_database, monkeypatch):
    _fleet(clean_database, 0, 30)
    monkeypatch.setattr(web.queries, "SEARCH_COUNT_LIMIT", 10)
    broad = _search(session, "dmq")  # every tablet
    assert (broad.total, broad.total_capped) == (10, True)
    assert [d.asset_tag for d in broad.items] == [f"FD-{n:06d}" for n in range(29, 24, -1)]
    assert broad.as_dict()["total_capped"] is True
    # Exactly the limit: counted, not "more than" (FD-000010 … FD-000019).
    tens = _search(session, "FD-00001")
    assert (tens.total, tens.total_capped) == (10, False)
    assert [d.asset_tag for d in tens.items] == [f"FD-{n:06d}" for n in range(19, 14, -1)]
    second = _search(session, "FD-00001", page=2)
    assert [d.asset_tag for d in second.items] == [f"FD-{n:06d}" for n in range(14, 9, -1)]
    assert (second.total, second.total_capped) == (10, False)
    past = _search(session, "FD-00001", page=3)
    assert (past.items, past.total, past.total_capped) == ([], 10, False)
    assert (_search(session, "zzzz").total, _search(session, "zzzz").items) == (0, [])
    # Case-insensitive, and a page further into a broad search walks the list's order.
    assert [d.asset_tag for d in _search(session, "DmQ", page=3).items] == [
        f"FD-{n:06d}" for n in range(19, 14, -1)
    ]


def test_a_narrow_search_is_one_statement_for_its_page_and_its_count(session, clean_database):
    _fleet(clean_database, 0, 12)

    def statements(q: str) -> int:
        session.commit()  # each count starts its own transaction (SQLite's BEGIN is a statement)
        session.expunge_all()
        with counted(clean_database) as seen:
            found = search_devices(session, ADMIN, {"q": q, "per_page": 50, "sort": "-last_seen"})
        assert found.total == 1 and not found.total_capped
        devices = [t for t in seen.texts if "FROM devices" in t and "LIKE" in t]
        assert len(devices) == 1, devices  # the matches read once, not counted then paged
        return seen.count

    at_n = statements("fd-000007")
    _fleet(clean_database, 12, 24)
    assert statements("fd-000007") == at_n


def test_a_broad_search_makes_the_same_statements_at_n_and_3n_devices(session, clean_database, monkeypatch):
    monkeypatch.setattr(web.queries, "SEARCH_COUNT_LIMIT", 10)
    _fleet(clean_database, 0, 12)

    def statements() -> int:
        session.commit()
        session.expunge_all()
        with counted(clean_database) as seen:
            found = search_devices(session, ADMIN, {"q": "救急", "per_page": 5, "sort": "-last_seen"})
        assert found.total_capped and len(found.items) == 5
        return seen.count

    at_n = statements()
    _fleet(clean_database, 12, 24)
    assert statements() == at_n


def test_postgresql_finds_matches_through_the_trigram_indexes(session, clean_database):
    if clean_database.dialect.name != "postgresql":
        pytest.skip("trigram indexes are PostgreSQL's (SQLite scans, right at its size)")
    _fleet(clean_database, 0, 3000)
    with clean_database.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE devices"))
    session.commit()
    executed: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "search_hits" in statement:
            executed.append((statement, parameters))

    event.listen(clean_database, "before_cursor_execute", keep)
    try:
        found = search_devices(session, ADMIN, {"q": "FD-00123", "per_page": 50, "sort": "-last_seen"})
    finally:
        event.remove(clean_database, "before_cursor_execute", keep)
    assert found.total == 10
    assert len(executed) == 1
    statement, parameters = executed[0]
    with clean_database.connect() as conn:
        # At 3,000 rows a scan still costs little, so the planner is told to avoid one: what is
        # asserted is that an index answers the LIKEs (without the trigram indexes only a walk
        # of the whole list in some order, filtering every row, would be left).
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plan = "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters))
    assert "Seq Scan on devices" not in plan, plan
    assert "ix_devices_trgm_" in plan, plan


def test_the_console_says_more_than_when_the_count_is_capped(app, settings, session_factory, monkeypatch):
    from tests.web.helpers import login, make_user

    with session_factory() as session:
        operator = make_user(session, settings, "search-capped", "operator")
    _fleet(session_factory.kw["bind"], 0, 12)
    monkeypatch.setattr(web.queries, "SEARCH_COUNT_LIMIT", 10)
    browser = app.test_client()
    login(browser, operator)
    html = browser.get("/console/devices?q=DMQ").get_data(as_text=True)
    assert "10 台を超える端末が該当します" in html
    assert "12 台を超える" not in html and "FD-000011" in html
