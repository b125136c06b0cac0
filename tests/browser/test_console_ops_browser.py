"""Issue #19 journeys in a real browser (Debian's chromium through Playwright), at the laptop
(1366×768) and the tablet (820×1180) viewports, against one live server:

- the approver's queue: the navigation counts the wipe waiting, the dashboard lists it, approval
  asks first with the tablet and the requester named, then the erase is sent;
- spares: an administrator marks a station's tablet as a spare on the continuity board and unmarks
  it on the device page, which also shows its profiles desired versus installed;
- the Android provisioning settings saved in the console until tokens can be made;
- asset tags from a CSV file, previewed and applied;
- dispatch staff land on the readiness board and see nothing else.

Screenshots go to test-artifacts/ (kept by CI).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import commands.incidents as hotline
from mdm.ground import clock
from mdm.ground.audit import SYSTEM, Actor
from mdm.ground.db import transaction
from mdm.ground.models import DeviceProfileState, Profile
from mdm.services.orgunits import assign_device, create_unit
from tests.browser.test_console_browser import ARTIFACTS, browser  # noqa: F401
from tests.browser.test_hotline_browser import _login, _watch
from tests.hotline.support import give_identity
from tests.support.factories import make_device
from tests.web.helpers import live_app, make_user

pytestmark = pytest.mark.browser

VIEWPORTS = {"1366": {"width": 1366, "height": 768}, "820": {"width": 820, "height": 1180}}
CHECKSUM = "gJD2YwtOiWJHkSMkkIfLRlj-quNqG1fb6v100QmzM9w="


def _no_sideways_scroll(page: Any) -> None:
    """The page fits the viewport's width (a tablet in portrait must not scroll sideways)."""
    wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert wide <= 1, f"{page.url} is {wide}px wider than the viewport"


def _shot(page: Any, name: str, viewport: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}-{viewport}.png"), full_page=True)


def test_approver_queue_spares_android_settings_labels_and_dispatch(
    browser: Any,  # noqa: F811
    settings: Any,
    session_factory: Any,
    tmp_path: Path,
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    people: dict[str, Any] = {}
    with session_factory() as session:
        for viewport in VIEWPORTS:
            people[f"admin-{viewport}"] = make_user(session, settings, f"chief-{viewport}", "admin")
            people[f"approver-{viewport}"] = make_user(session, settings, f"duty-sato-{viewport}", "approver")
            people[f"dispatcher-{viewport}"] = make_user(
                session, settings, f"shirei-{viewport}", "dispatcher"
            )
        requester = make_user(session, settings, "operator-tanaka", "operator")

    def build(base: str) -> Any:
        from mdm import create_app

        return create_app(replace(settings, public_url=base, push_enabled=False))

    with live_app(build) as (base, app):
        factory = app.extensions["hikeshi"].session_factory
        try:
            with transaction(factory) as s:
                hq = create_unit(s, {"kind": "hq", "name_ja": "火消し消防本部", "code": "HQ"}, actor=SYSTEM)
                station = create_unit(
                    s,
                    {"kind": "station", "name_ja": "中央消防署", "code": "ST", "parent_id": hq.id},
                    actor=SYSTEM,
                )
                unit = create_unit(
                    s,
                    {"kind": "unit", "unit_type": "ambulance", "name_ja": "救急1", "parent_id": station.id},
                    actor=SYSTEM,
                )
                shelf = make_device(s, serial="SHELF0001")
                shelf.device_name, shelf.last_seen_at = "予備棚 iPad", clock.now()
                assign_device(s, shelf, station, actor=SYSTEM)
                incidents = {}
                operator = Actor(f"user:{requester.username}", "operator", user_id=requester.user_id)
                for viewport in VIEWPORTS:
                    lost = make_device(s, serial=f"LOST{viewport}")
                    lost.device_name, lost.last_seen_at = f"救急1 iPad {viewport}", clock.now()
                    assign_device(s, lost, unit, actor=SYSTEM)
                    give_identity(s, lost)
                    incident = hotline.open_incident(s, lost, {"caller_name": "救急1 隊長"}, actor=operator)
                    hotline.request_wipe(s, incident, actor=operator, reason="盗難の疑い")
                    incidents[viewport] = (incident.id, lost.device_name, lost.id)
                profile = Profile(
                    identifier="jp.example.fd.myna", name_ja="マイナ救急", name_en="Myna", spec={}
                )
                s.add(profile)
                s.flush()
                first_lost = incidents["1366"][2]
                s.add(
                    DeviceProfileState(
                        device_id=first_lost,
                        identifier=profile.identifier,
                        profile_id=profile.id,
                        desired_version=1,
                        last_error="MDM 4001",
                        last_verified_at=clock.now(),
                    )
                )
                shelf_id, station_id = shelf.id, station.id

            for index, (viewport, size) in enumerate(VIEWPORTS.items()):
                problems: list[str] = []

                # The approver's queue.
                context = browser.new_context(locale="ja-JP", viewport=size)
                page = context.new_page()
                _watch(page, problems)
                _login(page, base, people[f"approver-{viewport}"])
                waiting = len(VIEWPORTS) - index
                assert page.inner_text("#nav-approvals-count") == str(waiting)
                incident_id, device_name, _device_id = incidents[viewport]
                row = page.locator(f"#pending-wipe-{incident_id}")
                assert device_name in row.inner_text() and "operator-tanaka" in row.inner_text()
                _no_sideways_scroll(page)
                _shot(page, "approver-dashboard", viewport)
                row.locator("a").click()
                page.wait_for_url(f"**/console/hotline/incidents/{incident_id}")
                page.click("#approve-wipe")
                question = page.locator(".confirm-message")
                question.wait_for()
                assert device_name in question.inner_text() and "operator-tanaka" in question.inner_text()
                _shot(page, "approver-confirm", viewport)
                page.click("#confirm-button")
                page.locator("#incident-status").get_by_text("消去承認済み・未実行").wait_for()
                assert page.inner_text("#nav-approvals-count") == str(waiting - 1)
                context.close()

                # Spares, and the profiles of a tablet, as an administrator.
                context = browser.new_context(locale="ja-JP", viewport=size)
                page = context.new_page()
                _watch(page, problems)
                _login(page, base, people[f"admin-{viewport}"])
                page.goto(f"{base}/console/continuity#spares")
                form = page.locator(f"#mark-spare-{station_id}")
                form.locator("select").select_option(str(shelf_id))
                form.locator("input[name=note]").fill("2階 予備棚")
                form.locator("button").click()
                page.locator(f"#unmark-spare-{shelf_id}").wait_for()
                _shot(page, "continuity-spares", viewport)
                page.goto(f"{base}/console/devices/{shelf_id}")
                assert "2階 予備棚" in page.inner_text("#spare-card")
                page.click("#unmark-spare")
                page.locator("#mark-spare-form").wait_for()
                page.goto(f"{base}/console/devices/{incidents['1366'][2]}#profile-states")
                assert "端末が拒否" in page.inner_text("#profile-state-table")
                _shot(page, "device-profiles", viewport)

                # Android provisioning: saved in the console, then tokens can be made.
                page.goto(f"{base}/console/settings#android-provisioning")
                if index == 0:
                    assert page.locator("#android-provisioning-problems").is_visible()
                    page.fill("#android-agent_download_url", "https://mdm.example.jp/agent/hikeshi-agent.apk")
                    page.fill("#android-agent_signature_checksum", CHECKSUM)
                    page.click("#save-android-settings")
                page.locator("#android-provisioning-ready").wait_for()
                _shot(page, "android-settings", viewport)

                # Asset tags from a CSV file.
                page.goto(f"{base}/console/devices/labels/import")
                sheet = tmp_path / f"labels-{viewport}.csv"
                sheet.write_text(f"シリアル番号,資産番号,使用者\nSHELF0001,FD-{viewport},中央消防署 予備\n")
                page.set_input_files("#bulk-labels-file", str(sheet))
                page.click("#bulk-labels-check")
                page.locator("#bulk-labels-preview").wait_for()
                assert f"FD-{viewport}" in page.inner_text("#bulk-labels-preview")
                _no_sideways_scroll(page)
                _shot(page, "bulk-labels", viewport)
                page.click("#bulk-labels-apply")
                page.wait_for_url("**/console/devices")
                page.get_by_text("1台の資産番号・使用者を保存しました").wait_for()
                context.close()

                # Dispatch staff: the readiness board and nothing else.
                context = browser.new_context(locale="ja-JP", viewport=size)
                page = context.new_page()
                _watch(page, problems)
                page.goto(f"{base}/console/login")
                page.fill("#username", people[f"dispatcher-{viewport}"].username)
                page.fill("#password", people[f"dispatcher-{viewport}"].password)
                page.click("#sign-in")
                page.wait_for_url("**/console/continuity")
                assert page.locator("nav.main-nav a", has_text="端末").count() == 0
                page.locator("#units-degraded, #units-critical, #units-ready").first.wait_for()
                _shot(page, "dispatcher", viewport)
                context.close()
                assert problems == [], problems  # no script error, CSP violation or failed request
        finally:
            app.extensions["hikeshi"].dispatcher.close()
            app.extensions["hikeshi"].engine.dispose()
    assert (ARTIFACTS / "approver-confirm-820.png").stat().st_size > 5_000
