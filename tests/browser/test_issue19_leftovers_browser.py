"""Issue #19's leftovers end to end in a real browser (Debian's chromium through Playwright), at the
laptop (1366×768) and the tablet (820×1180) viewports, against one live server and a real SMTP
server (aiosmtpd) in the test process:

- an administrator sets the station's lock-screen message and callback number on its org unit,
  an approver's e-mail address on the user page, and the mail server on the settings page, and
  sends a test mail that the SMTP server receives;
- the night operator finds the tablet: the lock form is prefilled with the station's text; they
  change the number and lock now; the incident page says the screen is unknown until the iPad
  (simulated over /mdm/connect) acknowledges, then shows exactly the message and number it
  acknowledged;
- the operator requests a wipe and the approver is mailed by the mail job.

axe-core checks every page on the way (tests/browser/axe.py). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import plistlib
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from mdm.ground.audit import SYSTEM
from mdm.ground.db import transaction
from mdm.ground.models import Device, OrgUnit
from mdm.roots.scheduler.jobs import JobContext, mail_delivery
from mdm.services.orgunits import assign_device, create_unit
from tests.browser.test_console_browser import ARTIFACTS, browser  # noqa: F401
from tests.browser.test_console_ops_browser import VIEWPORTS, _no_sideways_scroll, _shot
from tests.browser.test_hotline_browser import _login, _watch
from tests.support.smtp_server import smtp_server
from tests.web.helpers import live_app, make_user

pytestmark = pytest.mark.browser


def _fetch(ipad: Any, http: httpx.Client, body: bytes) -> dict[str, Any]:
    response = ipad.connect(http, body)
    assert response.status_code == 200, response.text
    return plistlib.loads(response.content) if response.content else {}


def test_lock_text_finder_screen_mail_server_and_approver_mail(
    browser: Any,  # noqa: F811
    settings: Any,
    device_ca: Any,
    session_factory: Any,
) -> None:
    from tests.support.apple_device import SimulatedIPad

    ARTIFACTS.mkdir(exist_ok=True)
    people: dict[str, Any] = {}
    with session_factory() as session:
        for viewport in VIEWPORTS:
            people[f"admin-{viewport}"] = make_user(session, settings, f"chief-{viewport}", "admin")
            people[f"operator-{viewport}"] = make_user(session, settings, f"op-{viewport}", "operator")
            people[f"approver-{viewport}"] = make_user(session, settings, f"duty-{viewport}", "approver")
    ipads = {
        viewport: SimulatedIPad(
            *device_ca.issue_identity(f"ipad-{viewport}"), device_name=f"救急1 iPad {viewport}"
        )
        for viewport in VIEWPORTS
    }
    conf = replace(settings, device_ca_file=str(device_ca.path), push_enabled=False)

    def build(base: str) -> Any:
        from mdm import create_app

        return create_app(replace(conf, public_url=base))

    with (
        smtp_server(user="hikeshi", password="relay pass") as mail,
        live_app(build) as (base, app),
        httpx.Client(base_url=base, timeout=30) as device_http,
    ):
        factory = app.extensions["hikeshi"].session_factory
        try:
            for ipad in ipads.values():
                assert ipad.checkin(device_http, ipad.authenticate_body()).status_code == 200
                assert ipad.checkin(device_http, ipad.token_update_body()).status_code == 200
            with transaction(factory) as s:
                hq = create_unit(s, {"kind": "hq", "name_ja": "火消し消防本部"}, actor=SYSTEM)
                station = create_unit(
                    s, {"kind": "station", "name_ja": "中央消防署", "parent_id": hq.id}, actor=SYSTEM
                )
                unit = create_unit(
                    s,
                    {"kind": "unit", "unit_type": "ambulance", "name_ja": "救急1隊", "parent_id": station.id},
                    actor=SYSTEM,
                )
                for viewport, ipad in ipads.items():
                    device = s.scalars(select(Device).where(Device.udid == ipad.udid)).one()
                    device.device_name, device.serial_number = f"救急1 iPad {viewport}", f"Q19{viewport}"
                    device.is_supervised = True
                    assign_device(s, device, unit, actor=SYSTEM)
                station_id = station.id

            for index, (viewport, size) in enumerate(VIEWPORTS.items()):
                problems: list[str] = []
                message = f"中央消防署 {viewport} へお届けください"
                # The administrator: the station's lock text, the approver's address, the mail server.
                context = browser.new_context(locale="ja-JP", viewport=size)
                page = context.new_page()
                _watch(page, problems)
                _login(page, base, people[f"admin-{viewport}"])
                page.goto(f"{base}/console/org-units/{station_id}#lock-text")
                page.fill("#lock-text-form textarea[name=lock_message]", message)
                page.fill("#lock-text-form input[name=lock_phone]", "03-3212-2111")
                page.click("#save-lock-text")
                page.locator("#lock-text-message").get_by_text(message).wait_for()
                assert "03-3212-2111" in page.inner_text("#lock-text-phone")
                _no_sideways_scroll(page)
                _shot(page, "orgunit-lock-text", viewport)
                approver = people[f"approver-{viewport}"]
                page.goto(f"{base}/console/users/{approver.user_id}")
                page.fill("#user-email", f"duty-{viewport}@fire.example.jp")
                page.click("form.card button[type=submit]")
                page.locator("#user-email-shown").get_by_text(f"duty-{viewport}@fire.example.jp").wait_for()
                page.goto(f"{base}/console/settings")
                page.click("#mail-settings-link")
                page.wait_for_url("**/console/settings/mail")
                page.fill("#mail-host", "127.0.0.1")
                page.fill("#mail-port", str(mail.port))
                page.select_option("#mail-tls", "none")
                page.fill("#mail-username", "hikeshi")
                page.fill("#mail-password", "relay pass")
                page.fill("#mail-from", "mdm@fire.example.jp")
                page.click("#save-mail-settings")
                page.locator("#mail-server-in-use").wait_for()
                assert "保存済み" in page.inner_text("#mail-password-state")
                page.fill("#mail-test-to", f"chief-{viewport}@fire.example.jp")
                page.click("#send-test-mail")
                page.locator(".flash-ok").get_by_text("テストメールを送信しました").wait_for()
                assert mail.received[-1].recipients == [f"chief-{viewport}@fire.example.jp"]
                assert mail.received[-1].login == "hikeshi"
                _no_sideways_scroll(page)
                _shot(page, "mail-settings", viewport)
                assert problems == [], problems
                context.close()

                # The operator: the lock form carries the station's text; the number is changed.
                context = browser.new_context(locale="ja-JP", viewport=size)
                page = context.new_page()
                _watch(page, problems)
                _login(page, base, people[f"operator-{viewport}"])
                page.goto(f"{base}/console/hotline?q=Q19{viewport}")
                hit = page.locator(".hotline-hit").first
                hit.wait_for()
                assert hit.locator("textarea.lock-message").input_value() == message
                assert hit.locator("input.lock-phone").input_value() == "03-3212-2111"
                hit.locator("input.caller-name").fill("救急1隊 山田")
                hit.locator("input.lock-phone").fill("0120-119-000")
                _no_sideways_scroll(page)
                _shot(page, "hotline-lock-text", viewport)
                hit.locator("button.lock-now").click()
                page.wait_for_url("**/console/hotline/incidents/*")
                incident_url = page.url
                assert page.get_attribute("#finder-screen", "data-state") == "not_acknowledged"
                assert "不明" in page.inner_text("#finder-state")
                assert page.locator("#finder-text").count() == 0  # nothing claimed as shown
                assert message in page.inner_text("#finder-waiting")

                # The iPad fetches lost mode and acknowledges it: the page shows what it shows.
                ipad = ipads[viewport]
                fetched = _fetch(ipad, device_http, ipad.idle_body())
                assert fetched["Command"]["RequestType"] == "EnableLostMode"
                assert fetched["Command"]["Message"] == message
                assert fetched["Command"]["PhoneNumber"] == "0120-119-000"
                _fetch(ipad, device_http, ipad.result_body(fetched["CommandUUID"]))
                # The live page reloads itself when what the finder sees changes.
                page.locator("#finder-screen[data-state=shown]").wait_for(timeout=15_000)
                assert page.inner_text("#finder-message") == message
                assert page.inner_text("#finder-phone") == "0120-119-000"
                _no_sideways_scroll(page)
                _shot(page, "incident-finder-screen", viewport)

                # A wipe request: the approver is mailed.
                page.fill("#wipe-request-reason", "盗難の疑い")
                page.click("#request-wipe")
                page.locator("#incident-status").get_by_text("消去申請中").wait_for()
                before = len(mail.received)
                sent = mail_delivery(JobContext(factory, replace(conf, public_url=base), "t"))
                assert sent["sent"] >= 1, sent
                told = [
                    r for r in mail.received[before:] if r.recipients == [f"duty-{viewport}@fire.example.jp"]
                ]
                assert len(told) == 1
                body = told[0].message.get_content()
                assert f"救急1 iPad {viewport}" in body and incident_url.removeprefix(base) in body
                assert problems == [], problems
                context.close()
                assert index in (0, 1)
            with transaction(factory) as s:
                assert s.get(OrgUnit, station_id).lock_phone == "03-3212-2111"
        finally:
            app.extensions["hikeshi"].dispatcher.close()
            app.extensions["hikeshi"].engine.dispose()
    assert (ARTIFACTS / "incident-finder-screen-820.png").stat().st_size > 5_000
