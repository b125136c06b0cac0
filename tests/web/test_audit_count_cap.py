"""The audit list counts its matches up to a limit (issue 23): the trail grows with every change
for years, and counting all of it read the whole table on every page. Past the limit the API
says `total_capped` and the console says "more than"; below it, the count is exact."""

from __future__ import annotations

from typing import Any

import pytest

import web.console.audit
import web.queries
from mdm.ground.audit import SYSTEM, record_event
from tests.web.helpers import bearer, login, make_token, make_user

LIMIT = 5


@pytest.fixture
def small_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The limit lowered, so a handful of events stands for years of them."""
    monkeypatch.setattr(web.queries, "AUDIT_COUNT_LIMIT", LIMIT)
    monkeypatch.setattr(web.console.audit, "AUDIT_COUNT_LIMIT", LIMIT)


def _record(session: Any, count: int, action: str) -> None:
    for i in range(count):
        record_event(session, SYSTEM, action, "device", str(i))
    session.commit()


def test_the_api_counts_up_to_the_limit_then_says_more(app_session, client, small_limit) -> None:
    token = make_token(app_session, "auditor")
    _record(app_session, LIMIT + 3, "test.many")
    _record(app_session, 2, "test.few")

    many = client.get("/api/v1/audit/events?action=test.many&per_page=2", headers=bearer(token))
    assert many.status_code == 200, many.json
    assert many.json["total"] == LIMIT and many.json["total_capped"] is True
    assert len(many.json["items"]) == 2
    # A page past the counted ones is still served: the limit bounds the count, not the trail.
    last = client.get("/api/v1/audit/events?action=test.many&per_page=2&page=4", headers=bearer(token))
    assert last.status_code == 200 and len(last.json["items"]) == 2

    few = client.get("/api/v1/audit/events?action=test.few", headers=bearer(token))
    assert few.json["total"] == 2 and few.json["total_capped"] is False


def test_the_console_says_more_than_the_limit(app_session, client, settings, small_limit) -> None:
    auditor = make_user(app_session, settings, "kansa", "auditor")
    _record(app_session, LIMIT + 1, "test.many")
    login(client, auditor)

    page = client.get("/console/audit?action=test.many", headers={"Cookie": "hikeshi_lang=ja"})
    assert page.status_code == 200
    assert f"{LIMIT} 件を超える記録が該当します" in page.get_data(as_text=True)
    exact = client.get("/console/audit?action=test.none", headers={"Cookie": "hikeshi_lang=ja"})
    assert "件を超える" not in exact.get_data(as_text=True)
