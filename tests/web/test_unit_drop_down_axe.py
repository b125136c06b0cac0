"""axe-core on the bounded unit drop-down (its search field shown) and on the paged continuity
board, the way a large tree renders them (issue 23); the small tree of the every-page sweep
shows neither."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tests.browser.test_console_browser import browser  # noqa: F401 (fixture)
from tests.continuity.helpers import build_tree, tablet
from tests.web.helpers import live_app, make_user


def test_axe_finds_nothing_on_the_bounded_drop_down_and_the_paged_board(
    browser: Any,  # noqa: F811
    settings: Any,
    session_factory: Any,
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr("web.unit_choices.LIMIT", 2)
    monkeypatch.setattr("web.console.continuity.UNITS_PER_PAGE", 2)
    with session_factory() as session:
        tree = build_tree(session)
        tablet(session, tree.ambulance3, "救急3 iPad")
        session.commit()
        operator = make_user(session, settings, "axe-units", "operator")

    def build(base: str) -> Any:
        from mdm import create_app

        return create_app(replace(settings, public_url=base, push_enabled=False))

    paths = [
        "/console/devices",
        "/console/devices?unit_q=救急",
        f"/console/continuity?unit_id={tree.central.id}",
        "/console/continuity?page=2",
        "/console/continuity?page=x",
    ]
    with live_app(build) as (base, _live):
        context = browser.new_context(locale="ja-JP", viewport={"width": 1366, "height": 768})
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{base}/console/login")
        page.fill("#username", operator.username)
        page.fill("#password", operator.password)
        page.click("#sign-in")
        page.wait_for_url("**/console/**")
        statuses = {}
        for path in paths:
            response = page.goto(f"{base}{path}")
            statuses[path] = response.status if response else None
        assert page.locator("#board-filter").count() == 1
        page.goto(f"{base}/console/devices")
        assert page.locator("#device-unit-q").count() == 1
        context.close()  # checks each page at both viewports; fails on any violation
    assert set(statuses.values()) == {200}
    checked = {path for path, _where in browser.watch.checked}
    assert {"/console/devices", "/console/continuity"} <= checked
    assert {where for _path, where in browser.watch.checked} == {"1366×768", "820×1180"}
