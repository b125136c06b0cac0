"""Every QR code the console shows is read back by zbarimg from a screenshot of the rendered page,
at a desktop (1366×768) and a tablet (820×1180) viewport: the authenticator QR of two-factor
setup (the decoded secret then completes the setup), the Apple enrollment QR on the token page and
on its printable sheet, and the Android provisioning QR on both (it was cut off at 80 mm). The
sheets' 印刷 buttons call the browser's print. The audit log at the same viewports keeps its
action column readable (it wrapped one letter per line at 820 px).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest

from enrollment import android_qr
from mdm.ground.audit import SYSTEM
from mdm.services.orgunits import create_unit
from tests.browser.test_console_browser import ARTIFACTS, browser  # noqa: F401
from tests.support.tools import require_tool
from tests.web.helpers import live_app, make_user

pytestmark = pytest.mark.browser

CHECKSUM = "gJD2YwtOiWJHkSMkkIfLRlj-quNqG1fb6v100QmzM9w="
VIEWPORTS = {"desktop": {"width": 1366, "height": 768}, "tablet": {"width": 820, "height": 1180}}
# Replaces window.print before any page script runs, so a click can be observed headless.
PRINT_SPY = "window.__printed = 0; window.print = () => { window.__printed += 1; };"


def _decoded(page: Any, zbarimg: str, shot: Path) -> str:
    """The text of the one QR code in a full-page screenshot, as a phone camera would read it."""
    page.screenshot(path=str(shot), full_page=True)
    read = subprocess.run(
        [zbarimg, "--quiet", "--raw", str(shot)], capture_output=True, text=True, timeout=60
    )
    assert read.returncode == 0, f"zbarimg cannot read {shot.name}: {read.stderr}"
    return read.stdout.strip()


def _prints(page: Any) -> None:
    page.click("#print")
    assert page.evaluate("window.__printed") == 1


@pytest.mark.parametrize("viewport", sorted(VIEWPORTS))
def test_every_qr_code_reads_back_from_a_screenshot_and_the_audit_log_fits(
    browser: Any,  # noqa: F811
    settings: Any,
    device_ca: Any,
    session_factory: Any,
    viewport: str,
) -> None:
    zbarimg = require_tool("zbarimg", "zbar-tools")
    ARTIFACTS.mkdir(exist_ok=True)
    with session_factory() as session:
        create_unit(session, {"kind": "hq", "name_ja": "火消し消防本部", "code": "HQ"}, actor=SYSTEM)
        session.commit()
        hq_label = "火消し消防本部 [HQ]"
        # An administrator who has not set up two-factor yet: the console asks for it at sign-in.
        admin = make_user(session, settings, "admin-qr", "admin", totp=False)

    def build(base: str) -> Any:
        from mdm import create_app

        return create_app(
            replace(
                settings,
                public_url=base,
                device_ca_file=str(device_ca.path),
                push_enabled=False,
                android_agent_download_url="https://mdm.test.invalid/agent/hikeshi-agent.apk",
                android_agent_signature_checksum=CHECKSUM,
            )
        )

    with live_app(build) as (base, app):
        try:
            context = browser.new_context(locale="ja-JP", viewport=VIEWPORTS[viewport])
            context.add_init_script(PRINT_SPY)
            page = context.new_page()
            page.set_default_timeout(15_000)
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)

            # Two-factor setup: the QR code carries the secret the authenticator app needs.
            page.goto(f"{base}/console/login")
            page.fill("#username", admin.username)
            page.fill("#password", admin.password)
            page.click("#sign-in")
            page.wait_for_url("**/console/account/totp")
            uri = _decoded(page, zbarimg, ARTIFACTS / f"qr-totp-{viewport}.png")
            assert uri.startswith("otpauth://totp/")
            secret = parse_qs(urlsplit(uri).query)["secret"][0]
            assert secret == page.inner_text("#totp-secret").strip().replace(" ", "")
            page.fill("#code", pyotp.TOTP(secret).now())
            page.click("#verify")
            page.locator("#recovery-codes li").first.wait_for()
            page.click("#continue")
            page.wait_for_url("**/console/dashboard")

            # Apple: the token page, then its printable sheet, show the enrollment URL.
            page.goto(f"{base}/console/enrollment-tokens")
            page.select_option("#token-unit", label=hq_label)
            page.click("#create-token")
            page.locator("#enrollment-qr svg").wait_for()
            url = page.inner_text("#enrollment-url").strip()
            assert _decoded(page, zbarimg, ARTIFACTS / f"qr-apple-token-{viewport}.png") == url
            apple_sheet = page.get_attribute("#print-sheet", "href") or ""
            page.goto(base + apple_sheet if apple_sheet.startswith("/") else apple_sheet)
            assert _decoded(page, zbarimg, ARTIFACTS / f"qr-apple-sheet-{viewport}.png") == url
            _prints(page)

            # Android: the device-owner provisioning QR, on the token page and on its sheet.
            page.goto(f"{base}/console/enrollment-tokens")
            page.select_option("#token-unit", label=hq_label)
            page.select_option("#token-form select[name=platform]", "android")
            page.click("#create-token")
            page.locator("#android-provisioning-qr svg").wait_for()
            payload = json.loads(_decoded(page, zbarimg, ARTIFACTS / f"qr-android-token-{viewport}.png"))
            extras = payload[android_qr.ADMIN_EXTRAS_BUNDLE]
            assert extras["hikeshi.server_url"] == base and payload[android_qr.SIGNATURE_CHECKSUM] == CHECKSUM
            sheet = page.get_attribute("#print-sheet", "href") or ""
            assert extras["hikeshi.enrollment_token"] in sheet
            page.goto(base + sheet if sheet.startswith("/") else sheet)
            box = page.locator(".qr svg").bounding_box()
            assert box is not None and box["width"] > 290  # printed at 80 mm, and readable there
            on_sheet = json.loads(_decoded(page, zbarimg, ARTIFACTS / f"qr-android-sheet-{viewport}.png"))
            assert on_sheet == payload
            _prints(page)

            # The audit log: the action column keeps a readable width; the page does not overflow.
            page.goto(f"{base}/console/audit")
            page.locator("#audit-table tbody tr[data-action]").first.wait_for()
            widths = page.eval_on_selector_all(
                "#audit-table td.audit-action", "els => els.map(e => e.getBoundingClientRect().width)"
            )
            assert widths and min(widths) >= 150, widths  # 10rem, whatever the other columns hold
            lines = page.eval_on_selector_all(
                "#audit-table td.audit-action .action-label",
                "els => els.map(e => Math.round(e.getBoundingClientRect().height / "
                "parseFloat(getComputedStyle(e).lineHeight || '20')))",
            )
            assert max(lines) <= 3, lines  # never one letter per line
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, overflow
            assert "トークン" in page.inner_text("#audit-table")  # labels, not enrollment_token.created
            page.screenshot(path=str(ARTIFACTS / f"audit-{viewport}.png"), full_page=True)
            assert problems == [], problems  # no CSP violation, no script error
            context.close()
        finally:
            app.extensions["hikeshi"].dispatcher.close()
            app.extensions["hikeshi"].engine.dispose()
