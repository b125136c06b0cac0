"""axe-core on every console page the browser tests visit, at both viewports (issue #19).

axe.min.js comes from the `axe-playwright-python` package (test extras). Every browser context the
tests open gets it as an init script, with a small runner that checks each console document once
it has loaded and reports the violations back through a binding: pages reached by a form's POST
(confirmations, refused input) are checked as the test sees them. When the test closes the
context, every console page it reached by GET is loaded again and checked at the laptop
(1366×768) and the tablet (820×1180) viewport. Any violation fails the test, naming the page,
the viewport, the rule and the elements.

The init script is injected by the browser itself (DevTools), not by the page, so the console's
Content-Security-Policy stays in force for everything the page does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from axe_playwright_python.base import AXE_SCRIPT

VIEWPORTS = {"1366×768": {"width": 1366, "height": 768}, "820×1180": {"width": 820, "height": 1180}}
OPTIONS = {"resultTypes": ["violations"]}

_RUNNER = """
(() => {
  if (window.top !== window || !location.pathname.startsWith('/console')) return;
  window.__hikeshiAxe = {done: false};
  window.addEventListener('load', () => {
    axe.run(document, OPTIONS).then((results) => {
      const found = JSON.stringify(results.violations);
      window.__hikeshiAxe = {done: true};
      return window.hikeshiAxeReport(location.href, found);
    }).catch((error) => { window.__hikeshiAxe = {done: true, error: String(error)}; });
  });
})();
""".replace("OPTIONS", json.dumps(OPTIONS))


def _summary(url: str, where: str, violations: list[dict[str, Any]]) -> list[str]:
    out = []
    for v in violations:
        targets = ", ".join(str(n.get("target")) for n in v.get("nodes", [])[:4])
        out.append(f"{urlsplit(url).path} [{where}] {v['id']} ({v.get('impact')}): {v['help']} → {targets}")
    return out


@dataclass
class AxeWatch:
    """Collects axe violations and the console pages seen, for every context it watches."""

    violations: list[str] = field(default_factory=list)
    checked: set[tuple[str, str]] = field(default_factory=set)
    contexts: list[AxeContext] = field(default_factory=list)

    def report(self, source: Any, url: str, found: str) -> None:
        size = source["page"].viewport_size or {}
        where = f"{size.get('width')}×{size.get('height')}"
        self.checked.add((urlsplit(url).path, where))
        self.violations.extend(_summary(url, where, json.loads(found)))

    def sweep(self, context: Any, urls: list[str]) -> None:
        """Load every page again in `context` and check it at both viewports."""
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            for url in urls:
                response = page.goto(url)
                if (
                    response is None
                    or response.status != 200
                    or not urlsplit(page.url).path.startswith("/console")
                ):
                    continue
                page.wait_for_function("window.__hikeshiAxe && window.__hikeshiAxe.done")
                for where, size in VIEWPORTS.items():
                    page.set_viewport_size(size)
                    found = page.evaluate(f"axe.run(document, {json.dumps(OPTIONS)})")
                    self.checked.add((urlsplit(page.url).path, where))
                    self.violations.extend(_summary(page.url, where, found["violations"]))
        finally:
            page.close()

    def assert_clean(self) -> None:
        assert not self.violations, "axe-core violations:\n" + "\n".join(dict.fromkeys(self.violations))


class AxeContext:
    """A Playwright BrowserContext whose console pages axe checks; close() sweeps, then closes."""

    def __init__(self, context: Any, watch: AxeWatch) -> None:
        self._context = context
        self._watch = watch
        self._urls: dict[str, None] = {}
        self._closed = False
        context.add_init_script(script=AXE_SCRIPT)
        context.add_init_script(script=_RUNNER)
        context.expose_binding("hikeshiAxeReport", watch.report)
        context.on("response", self._seen)

    def _seen(self, response: Any) -> None:
        request = response.request
        if not (request.is_navigation_request() and request.method == "GET" and response.status == 200):
            return
        if request.frame.parent_frame is not None:
            return
        if "text/html" not in (response.headers.get("content-type") or ""):
            return
        url = response.url.split("#", 1)[0]
        if urlsplit(url).path.startswith("/console"):
            self._urls.setdefault(url, None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._watch.sweep(self._context, list(self._urls))
        finally:
            self._context.close()
        self._watch.assert_clean()


class AxeBrowser:
    """The launched browser; every new context is watched."""

    def __init__(self, browser: Any, watch: AxeWatch) -> None:
        self._browser = browser
        self.watch = watch
        self._opened = False

    def new_context(self, **kwargs: Any) -> AxeContext:
        context = AxeContext(self._browser.new_context(**kwargs), self.watch)
        self.watch.contexts.append(context)
        self._opened = True
        return context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._browser, name)

    def finish(self) -> None:
        """Close the contexts a test left open (its server is gone by now: nothing to load again),
        then fail on any violation seen."""
        for context in self.watch.contexts:
            if not context._closed:
                context._closed = True
                try:
                    context._context.close()
                except Exception:  # the browser may already be gone after a failure
                    pass
        self.watch.assert_clean()
        assert self.watch.checked or not self._opened, "axe-core never ran on a console page"
