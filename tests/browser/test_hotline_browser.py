"""The hotline page in a real browser (Debian's chromium through Playwright) against a live server
that pushes to the APNs test server, with a simulated iPad on /mdm/checkin and /mdm/connect.

The operator searches with the keyboard only (the search box has the focus; Enter searches; the
first result's caller-name field takes the focus; Enter locks), watches the lock go queued →
pushed → delivered → acknowledged without touching the page, and requests a wipe. A different
person, the approver (password + TOTP), approves; the iPad fetches EraseDevice and acknowledges;
the page shows the wipe confirmed and links the certificate.
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
from mdm.ground.models import Device
from mdm.ground.push.certificates import import_push_certificate, read_push_certificate
from mdm.services.orgunits import assign_device, create_unit
from tests.browser.test_console_browser import ARTIFACTS, browser  # noqa: F401
from tests.web.helpers import Account, live_app, make_user

pytestmark = pytest.mark.browser


def _fetch(ipad: Any, http: httpx.Client, body: bytes) -> dict[str, Any]:
    response = ipad.connect(http, body)
    assert response.status_code == 200, response.text
    return plistlib.loads(response.content) if response.content else {}


def _login(page: Any, base: str, account: Account) -> None:
    page.goto(f"{base}/console/login")
    page.fill("#username", account.username)
    page.fill("#password", account.password)
    page.click("#sign-in")
    if account.seed is not None:
        page.wait_for_url("**/console/login/totp")
        page.fill("#code", account.code())
        page.click("#verify")
    page.wait_for_url("**/console/dashboard")


def _watch(page: Any, problems: list[str]) -> None:
    page.set_default_timeout(15_000)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)


def _state_is(page: Any, uuid: str, state: str) -> None:
    page.wait_for_function(
        "([uuid, state]) => { const s = document.querySelector("
        "`#incident-commands tr[data-uuid='${uuid}'] .delivery`); return s && s.dataset.state === state; }",
        arg=[uuid, state],
        timeout=15_000,
    )


def test_hotline_lock_now_and_two_person_wipe_in_a_browser(
    browser: Any,  # noqa: F811
    settings: Any,
    device_ca: Any,
    session_factory: Any,
    apns_server: Any,
) -> None:
    from tests.support.apple_device import SimulatedIPad

    ARTIFACTS.mkdir(exist_ok=True)
    push = apns_server.issue_client_credentials()
    cert, key = device_ca.issue_identity("hotline-ipad")
    ipad = SimulatedIPad(cert, key, topic=push.topic, device_name="救急3隊 iPad")
    with session_factory() as session:
        operator = make_user(session, settings, "operator-tanaka", "operator")
        approver = make_user(session, settings, "duty-officer-sato", "approver")
    conf = replace(
        settings,
        device_ca_file=str(device_ca.path),
        apns_url=apns_server.url,
        apns_ca_file=str(apns_server.ca_file),
    )

    def build(base: str) -> Any:
        from mdm import create_app

        return create_app(replace(conf, public_url=base))

    with live_app(build) as (base, app), httpx.Client(base_url=base, timeout=30) as device_http:
        factory = app.extensions["hikeshi"].session_factory
        dispatcher = app.extensions["hikeshi"].dispatcher
        try:
            with transaction(factory) as s:
                import_push_certificate(
                    s,
                    read_push_certificate(push.cert_pem + push.key_pem),
                    secret_key=conf.secret_key,
                    actor=SYSTEM,
                )
            assert ipad.checkin(device_http, ipad.authenticate_body()).status_code == 200
            assert ipad.checkin(device_http, ipad.token_update_body()).status_code == 200
            with transaction(factory) as s:
                device = s.scalars(select(Device).where(Device.udid == ipad.udid)).one()
                device.device_name = "救急3隊 iPad"
                device.is_supervised = True  # set from DeviceInformation in production
                hq = create_unit(s, {"kind": "hq", "name_ja": "火消し消防本部"}, actor=SYSTEM)
                station = create_unit(
                    s, {"kind": "station", "name_ja": "中央消防署", "parent_id": hq.id}, actor=SYSTEM
                )
                unit = create_unit(
                    s,
                    {"kind": "unit", "unit_type": "ambulance", "name_ja": "救急3隊", "parent_id": station.id},
                    actor=SYSTEM,
                )
                assign_device(s, device, unit, actor=SYSTEM)
                unit_id = unit.id

            problems: list[str] = []
            context = browser.new_context(locale="ja-JP", viewport={"width": 1280, "height": 1000})
            page = context.new_page()
            _watch(page, problems)
            _login(page, base, operator)

            # Keyboard only: the search box has the focus, Enter searches, the caller's name field
            # of the first result takes the focus, Enter locks.
            page.click("#nav-hotline")
            page.wait_for_url("**/console/hotline")
            assert page.evaluate("document.activeElement.id") == "hotline-q"
            page.keyboard.type("救急3隊")
            page.keyboard.press("Enter")
            page.locator(".hotline-hit").first.wait_for()
            assert page.locator(".hotline-hit").count() == 1
            page.wait_for_function("document.activeElement.classList.contains('caller-name')")
            page.keyboard.type("山田 太郎")
            page.screenshot(path=str(ARTIFACTS / "hotline-search.png"), full_page=True)
            page.keyboard.press("Enter")
            page.wait_for_url("**/console/hotline/incidents/*")
            incident_url = page.url
            incident_id = int(incident_url.rstrip("/").split("/")[-1])
            assert "紛失モード" in page.inner_text(".flash")
            lock_uuid = page.locator("#incident-commands tbody tr").first.get_attribute("data-uuid")
            assert lock_uuid

            # queued → pushed → delivered → acknowledged, live.
            apns_server.wait_for_pushes(1, timeout=10)
            assert dispatcher.wait_idle(10)
            _state_is(page, lock_uuid, "pushed")
            fetched = _fetch(ipad, device_http, ipad.idle_body())
            assert fetched["CommandUUID"] == lock_uuid
            assert fetched["Command"]["RequestType"] == "EnableLostMode"
            _state_is(page, lock_uuid, "delivered")
            _fetch(ipad, device_http, ipad.result_body(lock_uuid))
            page.locator("#incident-status").get_by_text("ロック済み").wait_for()
            _state_is(page, lock_uuid, "acknowledged")
            swap = page.get_attribute("#spare-swap", "href")
            assert swap == f"/console/continuity/swap?unit_id={unit_id}&incident_id={incident_id}"
            page.screenshot(path=str(ARTIFACTS / "hotline-locked.png"), full_page=True)

            # The operator asks for the wipe, and has no way to approve it.
            page.fill("#wipe-request-reason", "盗難の疑い")
            page.click("#request-wipe")
            page.locator("#incident-status").get_by_text("消去申請中").wait_for()
            assert page.locator("#approve-wipe").count() == 0
            assert page.locator("#break-glass").count() == 0

            # A second person approves.
            approver_context = browser.new_context(locale="ja-JP", viewport={"width": 1280, "height": 1000})
            second = approver_context.new_page()
            _watch(second, problems)
            _login(second, base, approver)
            assert second.inner_text("#nav-approvals-count") == "1"  # told on arrival (issue #19 item 7)
            second.goto(incident_url)
            second.click("#approve-wipe")
            # Approval asks first, naming the tablet and the requester.
            second.locator(".confirm-message").wait_for()
            assert "救急3隊 iPad" in second.inner_text(".confirm-message")
            assert "operator-tanaka" in second.inner_text(".confirm-message")
            second.click("#confirm-button")
            second.locator("#incident-status").get_by_text("消去承認済み・未実行").wait_for()
            assert "未配信" in second.inner_text("#wipe-progress")
            erase_uuid = second.locator("#incident-commands tbody tr").last.get_attribute("data-uuid")
            assert erase_uuid and erase_uuid != lock_uuid

            apns_server.wait_for_pushes(2, timeout=10)
            assert dispatcher.wait_idle(10)
            erase = _fetch(ipad, device_http, ipad.idle_body())
            assert erase["CommandUUID"] == erase_uuid and erase["Command"]["RequestType"] == "EraseDevice"
            _state_is(second, erase_uuid, "delivered")
            _fetch(ipad, device_http, ipad.result_body(erase_uuid))
            second.locator("#incident-status").get_by_text("消去完了").wait_for()
            second.locator("#certificate-links").wait_for()
            timeline = second.inner_text("#timeline")
            for text in ("消去を申請", "消去を承認", "端末がロックを確認", "消去完了:証明書を発行"):
                assert text in timeline, timeline
            second.screenshot(path=str(ARTIFACTS / "hotline-wiped.png"), full_page=True)
            # The operator's page followed along without a reload by hand.
            page.locator("#incident-status").get_by_text("消去完了").wait_for()

            second.click("#certificate-html")
            second.get_by_text("消去完了証明書").first.wait_for()
            assert ipad.serial in second.content() and erase_uuid in second.content()
            assert problems == [], problems  # no CSP violation, no script error
            approver_context.close()
            context.close()
        finally:
            dispatcher.close()
            app.extensions["hikeshi"].engine.dispose()
