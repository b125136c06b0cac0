"""The axe-core harness can fail: a console page with a violation, reached by GET, fails the
context's close() naming the rule, at both viewports; a clean page passes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.axe import AxeBrowser, AxeWatch
from tests.browser.test_console_browser import CHROMIUM_ARGS
from tests.support.tools import require_tool

pytestmark = pytest.mark.browser

CLEAN = (
    '<!doctype html><html lang="ja"><head><title>確認</title></head>'
    "<body><main><h1>確認</h1><p>問題なし</p></main></body></html>"
)
BROKEN = CLEAN.replace("<p>問題なし</p>", '<p>画像</p><img src="/x.png"><input type="text">')


def _serving(body: str) -> Any:
    def fulfill(route: Any) -> None:
        route.fulfill(status=200, content_type="text/html; charset=utf-8", body=body)

    return fulfill


def test_axe_fails_on_a_violation_and_passes_a_clean_page() -> None:
    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            for html, clean in ((CLEAN, True), (BROKEN, False)):
                browser = AxeBrowser(launched, AxeWatch())
                context: Any = browser.new_context(locale="ja-JP")
                context.route("http://hikeshi.test/**", _serving(html))
                page = context.new_page()
                page.goto("http://hikeshi.test/console/page")
                if clean:
                    context.close()
                    assert ("/console/page", "820×1180") in browser.watch.checked
                    continue
                with pytest.raises(AssertionError) as failed:
                    context.close()
                text = str(failed.value)
                assert "image-alt" in text and "label" in text
                assert "[1366×768]" in text and "[820×1180]" in text
        finally:
            launched.close()
