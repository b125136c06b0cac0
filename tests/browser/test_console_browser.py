"""The console in a real browser (Debian's chromium through Playwright), against a live server.

First administrator: one-time password → forced change → TOTP enrollment by QR → recovery codes;
sign out and in again with password and TOTP; create an org unit and an enrollment token and see
its QR code; open a device that a simulated iPad enrolled over /mdm/checkin, queue DeviceLock, and
watch the command history change state without a reload when the iPad acknowledges it over
/mdm/connect. Screenshots of the dashboard and the device page go to test-artifacts/.
"""

from __future__ import annotations

import plistlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from mdm.ground import clock
from mdm.ground.db import transaction
from tests.browser.axe import AxeBrowser, AxeWatch
from tests.conftest import MovableClock
from tests.support.tools import require_tool
from tests.web.helpers import live_app
from web.auth.users import bootstrap_first_admin

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NEW_PASSWORD = "first watch at the Edo station"


@pytest.fixture
def moving_clock() -> Iterator[MovableClock]:
    """Real time, frozen so the test can step over a TOTP period (a code is never accepted twice)."""
    moving = MovableClock(datetime.now(UTC))
    clock.set_clock(moving)
    yield moving
    clock.set_clock(None)


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        watched = AxeBrowser(launched, AxeWatch())
        try:
            yield watched
            watched.finish()  # axe-core: no violation on any console page the test visited
        finally:
            launched.close()


def _command_uuid(response: httpx.Response) -> tuple[str, str]:
    assert response.status_code == 200, response.text
    command = plistlib.loads(response.content)
    return command["CommandUUID"], command["Command"]["RequestType"]


def test_console_end_to_end(
    browser: Any, settings: Any, device_ca: Any, session_factory: Any, moving_clock: MovableClock
) -> None:
    from tests.support.apple_device import SimulatedIPad

    ARTIFACTS.mkdir(exist_ok=True)
    cert, key = device_ca.issue_identity("browser-ipad")
    ipad = SimulatedIPad(cert, key, device_name="中央救急1 iPad")
    with transaction(session_factory) as session:
        first = bootstrap_first_admin(session)
    assert first is not None

    def build(base: str) -> Any:
        from mdm import create_app

        return create_app(
            replace(settings, public_url=base, device_ca_file=str(device_ca.path), push_enabled=False)
        )

    with live_app(build) as (base, app), httpx.Client(base_url=base, timeout=30) as device_http:
        try:
            # The tablet enrolls over the Apple check-in protocol, signed with its identity.
            assert ipad.checkin(device_http, ipad.authenticate_body()).status_code == 200
            assert ipad.checkin(device_http, ipad.token_update_body()).status_code == 200

            context = browser.new_context(locale="ja-JP", viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.set_default_timeout(15_000)
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)

            # First sign-in with the one-time password printed by the start command.
            page.goto(f"{base}/console/")
            page.fill("#username", first.username)
            page.fill("#password", first.password)
            page.click("#sign-in")
            page.wait_for_url("**/console/account/password")
            page.fill("#current_password", first.password)
            page.fill("#new_password", NEW_PASSWORD)
            page.fill("#new_password_again", NEW_PASSWORD)
            page.click("#change-password")

            # TOTP enrollment: the QR code is there; the authenticator (pyotp) reads the key.
            page.wait_for_url("**/console/account/totp")
            assert page.locator("#totp-qr svg").is_visible()
            seed = page.inner_text("#totp-secret").strip()
            page.fill("#code", pyotp.TOTP(seed).at(clock.now()))
            page.click("#verify")
            page.locator("#recovery-codes li").first.wait_for()
            assert page.locator("#recovery-codes li").count() == 10
            page.click("#continue")
            page.wait_for_url("**/console/dashboard")

            # Sign out, and in again with password and TOTP (the next 30 s code).
            page.click("text=サインアウト")
            page.wait_for_url("**/console/login")
            moving_clock.advance(seconds=30)
            page.fill("#username", first.username)
            page.fill("#password", NEW_PASSWORD)
            page.click("#sign-in")
            page.wait_for_url("**/console/login/totp")
            page.fill("#code", pyotp.TOTP(seed).at(clock.now()))
            page.click("#verify")
            page.wait_for_url("**/console/dashboard")
            assert page.inner_text("#tile-enrolled .n") == "1"
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            # An org unit, then an enrollment token for it: its QR code is shown once.
            page.goto(f"{base}/console/org-units")
            page.select_option("#unit-form select[name=kind]", "hq")
            page.fill("#unit-form input[name=name_ja]", "火消し消防本部")
            page.fill("#unit-form input[name=code]", "HQ")
            page.click("#create-unit")
            page.wait_for_load_state()
            page.locator("#unit-tree").get_by_text("火消し消防本部").wait_for()
            page.goto(f"{base}/console/enrollment-tokens")
            page.select_option("#token-unit", label="火消し消防本部 [HQ]")
            page.click("#create-token")
            page.locator("#enrollment-qr svg").wait_for()
            assert page.inner_text("#enrollment-url").startswith(f"{base}/enroll/")
            sheet = page.get_attribute("#print-sheet", "href")
            assert sheet is not None and device_http.get(sheet).status_code == 200
            page.screenshot(path=str(ARTIFACTS / "enrollment-token.png"), full_page=True)

            # Open the device and lock it; the confirmation says what will happen.
            page.goto(f"{base}/console/devices")
            page.click("text=中央救急1 iPad")
            page.wait_for_url("**/console/devices/*")
            device_url = page.url
            assert page.locator("#request_type option").first.get_attribute("value") == "DeviceLock"
            page.fill("#command-form input[name=message]", "拾得された方は119番へ")
            page.click("#send-command")
            page.locator(".confirm-message").wait_for()
            assert "中央救急1 iPad" in page.inner_text(".confirm-message")
            page.click("#confirm-button")
            page.wait_for_url(device_url)
            state = page.locator("#command-history tbody tr").first.locator("[data-field=status]")
            assert state.inner_text() == "送信待ち"
            page.evaluate("window.hikeshiNoReload = true")

            # The iPad connects, fetches the lock, and acknowledges it.
            uuid, request_type = _command_uuid(ipad.connect(device_http, ipad.idle_body()))
            assert request_type == "DeviceLock"
            row = page.locator(f'#command-history tr[data-uuid="{uuid}"] [data-field=status]')
            row.wait_for()
            assert ipad.connect(device_http, ipad.result_body(uuid, "Acknowledged")).status_code == 200
            acknowledged = (
                "uuid => document.querySelector("
                "`#command-history tr[data-uuid='${uuid}'] [data-field=status]`"
                ").textContent.trim() === '完了'"
            )
            page.wait_for_function(acknowledged, arg=uuid, timeout=15_000)
            assert page.evaluate("window.hikeshiNoReload === true"), "the page reloaded"
            page.screenshot(path=str(ARTIFACTS / "device.png"), full_page=True)

            # English on request.
            page.click("#lang-en")
            page.locator("#command-history").get_by_text("acknowledged").wait_for()
            assert problems == [], problems  # no CSP violation, no script error
            context.close()
        finally:
            app.extensions["hikeshi"].dispatcher.close()
            app.extensions["hikeshi"].engine.dispose()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
    assert (ARTIFACTS / "device.png").stat().st_size > 10_000
