"""No page of Hikeshi carries an inline event handler or inline script.

Every page is served with a CSP whose script-src is 'self' only, so the browser silently ignores
an onclick="..." or a javascript: link: the button looks fine and does nothing (the enrollment
sheet's 印刷 button did exactly that). Handlers belong in static .js files, wired by data- or id
attributes. The console's policy also forbids style attributes (style-src 'self').
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mdm", "enrollment", "profiles", "commands", "web")
# An attribute named on<event> inside a tag, a javascript: URL, or a <script> with a body.
INLINE_HANDLER = re.compile(r"<[a-zA-Z][^>]*\son[a-z]+\s*=", re.DOTALL)
JAVASCRIPT_URL = re.compile(r"""(?:href|src|action|formaction)\s*=\s*["']?\s*javascript:""", re.IGNORECASE)
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"<[a-zA-Z][^>]*\sstyle\s*=", re.DOTALL)


def _templates() -> list[Path]:
    found = [p for package in PACKAGES for p in (ROOT / package).rglob("templates/**/*.html")]
    assert len(found) > 30  # the search itself works
    return sorted(found)


def _problems(text: str, *, strict_style: bool) -> list[str]:
    problems = []
    for name, pattern in (
        ("inline handler", INLINE_HANDLER),
        ("javascript: URL", JAVASCRIPT_URL),
        ("inline <script>", INLINE_SCRIPT),
    ):
        problems += [f"{name}: {m.group(0)[:80]!r}" for m in pattern.finditer(text)]
    if strict_style:
        problems += [f"style attribute: {m.group(0)[:80]!r}" for m in STYLE_ATTRIBUTE.finditer(text)]
    return problems


def test_no_template_has_an_inline_handler_or_script() -> None:
    found = []
    for path in _templates():
        console = "console" in path.relative_to(ROOT).parts
        found += [
            f"{path.relative_to(ROOT)}: {p}"
            for p in _problems(path.read_text(encoding="utf-8"), strict_style=console)
        ]
    assert found == []


def test_html_built_in_python_has_no_inline_handler() -> None:
    # Pages rendered without a template (the wipe certificate) and any markup in Python strings.
    found = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            found += [f"{path.relative_to(ROOT)}: {p}" for p in _problems(text, strict_style=False)]
    assert found == []


def test_the_checks_catch_what_the_sheet_had() -> None:
    bad = '<p><button type="button" onclick="window.print()">印刷</button></p>'
    assert _problems(bad, strict_style=False) == ["inline handler: '<button type=\"button\" onclick='"]
    assert _problems('<a href="javascript:print()">x</a>', strict_style=False)
    assert _problems("<script>print()</script>", strict_style=False)
    assert _problems('<script src="/s.js" defer></script>', strict_style=False) == []
    assert _problems('<td data-one="1" class="on">', strict_style=True) == []
    assert _problems('<div style="width: 80mm">', strict_style=True)
