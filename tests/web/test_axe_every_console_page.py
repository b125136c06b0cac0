"""axe-core on every console page, not only those the journeys happen to visit (issue #19).

The Japanese-page test's populated server (an incident with a wipe request, a profile, an alert,
enrollment tokens, users) is served live; a signed-in administrator's browser opens every GET
page of the console blueprint, and the watched browser (tests/browser/axe.py) checks each one as
it loads and again at the laptop and the tablet viewport. Any violation fails, naming the page,
the viewport, the rule and the elements.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tests.browser.test_console_browser import browser  # noqa: F401 (fixture)
from tests.web.helpers import live_app, make_user
from tests.web.test_console_japanese import _pages, walked  # noqa: F401 (fixture)


def test_axe_finds_nothing_on_any_console_page(
    browser: Any,  # noqa: F811
    walked: dict[str, Any],  # noqa: F811
    app: Any,
    settings: Any,
    session_factory: Any,
) -> None:
    client = walked["client"]
    # Pages, not downloads (CSV templates, exports): what a browser renders.
    paths = [p for p in _pages(app, walked["ids"]) if client.get(p).mimetype == "text/html"]
    assert len(paths) >= 25, paths  # the walk reaches the whole console, not a few pages
    with session_factory() as session:
        admin = make_user(session, settings, "axe-admin", "admin")

    def build(base: str) -> Any:
        from mdm import create_app

        return create_app(replace(settings, public_url=base, push_enabled=False))

    with live_app(build) as (base, _live):
        context = browser.new_context(locale="ja-JP", viewport={"width": 1366, "height": 768})
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{base}/console/login")
        page.fill("#username", admin.username)
        page.fill("#password", admin.password)
        page.click("#sign-in")
        page.wait_for_url("**/console/login/totp")
        page.fill("#code", admin.code())
        page.click("#verify")
        page.wait_for_url("**/console/dashboard")
        refused = []
        for path in paths:
            response = page.goto(f"{base}{path}")
            if response is None or response.status != 200:
                refused.append(f"{path}: {response and response.status}")
        context.close()  # sweeps every page at both viewports; fails on any violation
    assert refused == []
    checked = {where for _path, where in browser.watch.checked}
    assert checked == {"1366×768", "820×1180"}
    assert len({path for path, _where in browser.watch.checked}) >= len(paths)
