"""From the console to a provisioned tablet: an administrator creates an android enrollment token,
the page shows the device-owner QR code once and links the printable sheet; the QR read back by
zbarimg carries the token a reference agent then enrolls with."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from enrollment import android_qr
from mdm.ground.audit import SYSTEM
from mdm.ground.models import Device, DeviceFacts, EnrollmentToken
from mdm.services import orgunits
from tests.support.android_agent import ReferenceAgent
from tests.support.tools import require_tool
from tests.web.helpers import bearer, csrf_of, login, make_user, post_form
from tests.web.helpers import make_token as api_token

CHECKSUM = "gJD2YwtOiWJHkSMkkIfLRlj-quNqG1fb6v100QmzM9w="
SHEET = re.compile(r'href="(/android/provisioning/([^/"]+)/sheet)"')


def _build(settings: Any, **overrides: Any) -> Any:
    from mdm import create_app

    return create_app(replace(settings, push_enabled=False, **overrides))


@pytest.fixture
def android_app(settings: Any) -> Iterator[Any]:
    app = _build(
        settings,
        android_agent_download_url="https://mdm.test.invalid/agent/hikeshi-agent.apk",
        android_agent_signature_checksum=CHECKSUM,
    )
    yield app
    app.extensions["hikeshi"].dispatcher.close()
    app.extensions["hikeshi"].engine.dispose()


def _admin_and_unit(app: Any) -> tuple[Any, Any]:
    hikeshi = app.extensions["hikeshi"]
    with hikeshi.session_factory() as session:
        hq = orgunits.create_unit(
            session, {"kind": "hq", "name_ja": "東京消防本部", "code": "HQ"}, actor=SYSTEM
        )
        station = orgunits.create_unit(
            session,
            {"kind": "station", "name_ja": "中央消防署", "code": "ST", "parent_id": hq.id},
            actor=SYSTEM,
        )
        unit = orgunits.create_unit(
            session,
            {"kind": "unit", "name_ja": "中央救急隊", "code": "A1", "parent_id": station.id},
            actor=SYSTEM,
        )
        session.commit()
        admin = make_user(session, hikeshi.settings, "admin1", "admin")
        return admin, unit.id


def _create_android_token(client: Any, unit_id: int) -> Any:
    return post_form(
        client,
        "/console/enrollment-tokens",
        {"org_unit_id": str(unit_id), "platform": "android", "max_uses": "2", "expires_in_days": "3"},
    )


@pytest.mark.tool
def test_console_shows_the_android_qr_and_the_sheet_enrolls_an_agent(
    android_app: Any, tmp_path: Path
) -> None:
    zbarimg = require_tool("zbarimg", "zbar-tools")
    admin, unit_id = _admin_and_unit(android_app)
    client = android_app.test_client()
    login(client, admin)
    made = _create_android_token(client, unit_id)
    html = made.get_data(as_text=True)
    assert made.status_code == 200 and 'id="android-provisioning-qr"' in html and "<svg" in html
    assert "6 回タップ" in html  # Japanese first
    sheet_path, secret = SHEET.search(html).groups()
    assert secret not in html.replace(sheet_path, "")  # the secret appears only in the sheet link

    sheet = client.get(sheet_path)
    text = sheet.get_data(as_text=True)
    assert sheet.status_code == 200 and sheet.headers["Cache-Control"] == "no-store"
    for expected in (
        "Android 端末登録シート",
        "Android tablet enrollment sheet",
        "中央救急隊",
        "2 / 2",
        "<svg",
    ):
        assert expected in text, expected
    assert text.count("<li>") == 3

    png = client.get(sheet_path.replace("/sheet", "/qr.png"))
    assert png.status_code == 200 and png.headers["Content-Type"] == "image/png"
    image = tmp_path / "qr.png"
    image.write_bytes(png.data)
    read = subprocess.run(
        [zbarimg, "--quiet", "--raw", str(image)], capture_output=True, text=True, timeout=60
    )
    assert read.returncode == 0, read.stderr
    payload = json.loads(read.stdout.strip())
    extras = payload[android_qr.ADMIN_EXTRAS_BUNDLE]
    assert payload[android_qr.SIGNATURE_CHECKSUM] == CHECKSUM
    assert extras == {"hikeshi.server_url": "https://mdm.test.invalid", "hikeshi.enrollment_token": secret}

    # What the agent gets from the admin extras is all it needs to enroll into the token's unit.
    transport = httpx.WSGITransport(app=android_app)
    agent = ReferenceAgent(
        "http://testserver", client=httpx.Client(transport=transport, base_url="http://testserver")
    )
    agent.enroll(extras["hikeshi.enrollment_token"])
    with android_app.extensions["hikeshi"].session_factory() as session:
        device = session.get(Device, agent.device_id)
        assert device.platform == "android" and device.org_unit_id == unit_id
        token = session.scalars(select(EnrollmentToken)).one()
        assert token.use_count == 1
    agent.http.close()

    # An Apple token or a made-up one gets the friendly page, never a traceback.
    assert client.get("/android/provisioning/not-a-token/sheet").status_code == 404


def test_android_tokens_are_refused_until_the_console_settings_make_them_usable(settings: Any) -> None:
    """Issue #19 item 8: no token whose QR code cannot be made; the settings are stored from the
    console (no environment variable, no restart), audited without the Wi-Fi password."""
    from enrollment.android_settings import effective_settings
    from mdm.ground.models import AndroidProvisioning, AuditEvent

    app = _build(settings)
    try:
        admin, unit_id = _admin_and_unit(app)
        client = app.test_client()
        login(client, admin)
        refused = _create_android_token(client, unit_id).get_data(as_text=True)
        assert "トークンを作成しません" in refused and "エージェントAPKのURL" in refused
        assert "<svg" not in refused
        with app.extensions["hikeshi"].session_factory() as session:
            headers = bearer(api_token(session, "admin"))
        by_api = client.post(
            "/api/v1/enrollment-tokens",
            json={"org_unit_id": unit_id, "platform": "android", "max_uses": 1, "expires_in_hours": 24},
            headers=headers,
        )
        assert by_api.status_code == 400 and "platform" in by_api.get_json()["error"]["fields"]
        page = client.get("/console/settings").get_data(as_text=True)
        problems = re.search(r'id="android-provisioning-problems".*?</div>', page, re.S)
        assert problems and "エージェントAPKのダウンロードURL" in problems.group(0)

        bad = post_form(
            client,
            "/console/settings/android",
            {"agent_download_url": "http://plain.example/a.apk", "agent_signature_checksum": "abc"},
            page="/console/settings",
        )
        text = bad.get_data(as_text=True)
        assert bad.status_code == 400 and "受け付けられません" in text and "https://" in text and "44" in text
        saved = post_form(
            client,
            "/console/settings/android",
            {
                "agent_download_url": "https://mdm.test.invalid/agent/hikeshi-agent.apk",
                "agent_signature_checksum": CHECKSUM,
                "wifi_ssid": "FD-SETUP",
                "wifi_security": "wpa",
                "wifi_password": "setup-secret-1",
            },
            page="/console/settings",
        )
        assert saved.status_code == 302
        assert 'id="android-provisioning-ready"' in client.get("/console/settings").get_data(as_text=True)
        made = _create_android_token(client, unit_id).get_data(as_text=True)
        assert 'id="android-provisioning-qr"' in made and "<svg" in made
        hikeshi = app.extensions["hikeshi"]
        with hikeshi.session_factory() as session:
            assert len(session.scalars(select(EnrollmentToken)).all()) == 1
            payload = android_qr.provisioning_payload(effective_settings(session, hikeshi.settings), "s")
            assert payload[android_qr.DOWNLOAD_LOCATION].endswith("/hikeshi-agent.apk")
            assert (
                payload[android_qr.WIFI_SSID] == "FD-SETUP"
                and payload[android_qr.WIFI_SECURITY_TYPE] == "WPA"
            )
            assert payload[android_qr.WIFI_PASSWORD] == "setup-secret-1"
            row = session.get(AndroidProvisioning, 1)
            assert row is not None and b"setup-secret-1" not in (row.wifi_password_sealed or b"")
            event = session.scalars(
                select(AuditEvent).where(AuditEvent.action == "android.provisioning_changed")
            ).one()
            assert event.details["wifi_password_stored"] is True
            assert "setup-secret-1" not in json.dumps(event.details)
            local = make_user(session, hikeshi.settings, "station-admin", "admin", org_unit_id=unit_id)
        scoped = app.test_client()
        login(scoped, local)
        page = scoped.get("/console/settings").get_data(as_text=True)
        assert 'id="save-android-settings"' not in page
        denied = scoped.post(
            "/console/settings/android", data={"locale": "en_US", "csrf_token": csrf_of(page)}
        )
        assert denied.status_code == 403
    finally:
        app.extensions["hikeshi"].dispatcher.close()
        app.extensions["hikeshi"].engine.dispose()


# -- an enrolled tablet in the console and the API ---------------------------------------------------


def _device_page(enroll_app: Any, device_id: int) -> str:
    hikeshi = enroll_app.extensions["hikeshi"]
    with hikeshi.session_factory() as session:
        admin = make_user(session, hikeshi.settings, f"admin-{device_id}", "admin")
    client = enroll_app.test_client()
    login(client, admin)
    page = client.get(f"/console/devices/{device_id}")
    assert page.status_code == 200
    return page.get_data(as_text=True)


def _dd(html: str, element_id: str) -> str:
    match = re.search(rf'<dd id="{element_id}"[^>]*>(.*?)</dd>', html, re.S)
    assert match, element_id
    return match.group(1).strip()


def test_an_enrolled_tablet_shows_its_platform_facts_and_apps(
    enroll_app: Any, agent_factory: Any, android_token: Any
) -> None:
    agent = agent_factory(serial_number="R52T2000001")
    agent.packages.append(
        {"package_name": "jp.example.chat", "label": "Chat", "version_name": "2.1", "version_code": 21}
    )
    agent.enroll(android_token())
    agent.sync()  # the first inventory

    html = _device_page(enroll_app, agent.device_id)
    assert _dd(html, "device-platform") == "Android"
    assert _dd(html, "device-os") == "Android 14 (UP1A.231005.007)"
    assert _dd(html, "device-owner") == "はい"  # Japanese first
    assert _dd(html, "security-patch") == "2026-10-01"
    assert _dd(html, "encryption") == "有効"
    assert _dd(html, "device-wakeup") == "ロングポーリング"  # no broker configured
    assert "samsung SM-X306B" in html and "R52T2000001" in html
    # The apps the tablet's users have, not the firmware's own packages (kept in the raw inventory).
    identifiers = re.findall(r'data-identifier="([^"]+)"', html)
    assert sorted(identifiers) == ["jp.example.chat", "jp.hikeshi.agent"]
    assert "2.1" in html
    # Apple-only rows are left out; Apple's push state is not an Android agent's concern.
    assert "Activation Lock" not in html and "アクティベーションロック" not in html
    assert "プッシュトークンなし" not in html
    # The Android-only commands are offered, in Japanese first; Apple's ClearPasscode is not.
    offered = re.findall(r'<option value="([A-Za-z]+)">([^<]*)</option>', html)
    labels = dict(offered)
    assert labels["ResetPassword"].startswith("画面ロックのパスワード再設定")
    assert labels["ClearAppData"].startswith("アプリのデータ消去")
    assert labels["RelinquishOwnership"].startswith("管理の解除")
    assert "ClearPasscode" not in labels

    hikeshi = enroll_app.extensions["hikeshi"]
    with hikeshi.session_factory() as session:
        headers = bearer(api_token(session, "admin"))
    api = enroll_app.test_client()
    device = api.get(f"/api/v1/devices/{agent.device_id}", headers=headers).get_json()
    assert device["platform"] == "android" and device["os_version"] == "14"
    assert device["supervised"] is True and device["serial_number"] == "R52T2000001"
    assert device["model_name"] == "samsung SM-X306B"
    facts = api.get(f"/api/v1/devices/{agent.device_id}/facts", headers=headers).get_json()
    assert facts["android_security_patch"] == "2026-10-01"
    assert facts["android_device_owner"] is True and facts["is_supervised"] is True
    assert facts["battery_level"] == 0.83 and facts["device_capacity_gb"] == 128.0
    assert facts["available_capacity_gb"] == 64.0 and facts["time_zone"] == "Asia/Tokyo"
    assert facts["passcode_present"] is True and facts["passcode_compliant"] is True
    assert facts["raw_security_info"]["encryption"] == "active_per_user"
    assert facts["raw_device_information"]["os"]["android_version"] == "14"
    assert facts["raw_device_information"]["system_packages"] == ["com.android.settings"]
    apps = api.get(f"/api/v1/devices/{agent.device_id}/apps", headers=headers).get_json()
    assert {a["identifier"]: a["short_version"] for a in apps} == {
        "jp.example.chat": "2.1",
        "jp.hikeshi.agent": "1.0",
    }


def test_a_tablet_that_lost_device_owner_shows_it(
    enroll_app: Any, agent_factory: Any, android_token: Any
) -> None:
    agent = agent_factory(serial_number="R52T2000002")
    agent.enroll(android_token())
    agent.device_owner = False
    agent.sync()

    html = _device_page(enroll_app, agent.device_id)
    assert "error" in _dd(html, "device-owner") and "いいえ" in _dd(html, "device-owner")
    with enroll_app.extensions["hikeshi"].session_factory() as session:
        facts = session.get(DeviceFacts, agent.device_id)
        assert facts is not None and facts.android_device_owner is False


def test_a_partial_inventory_keeps_what_the_tablet_reported_before(
    enroll_app: Any, agent_factory: Any, android_token: Any
) -> None:
    # "each part may be left out" (section 7): a battery-only inventory forgets nothing else.
    agent = agent_factory(serial_number="R52T2000003")
    agent.enroll(android_token())
    agent.sync()
    inventory = {"battery": {"level": 0.5}}
    payload = {"policy_version": agent.policy_version, "results": [], "inventory": inventory}
    assert agent.request("POST", "/android/v1/sync", payload).status_code == 200

    html = _device_page(enroll_app, agent.device_id)
    assert _dd(html, "encryption") == "有効" and _dd(html, "security-patch") == "2026-10-01"
    assert re.findall(r'data-identifier="([^"]+)"', html) == ["jp.hikeshi.agent"]
    with enroll_app.extensions["hikeshi"].session_factory() as session:
        facts = session.get(DeviceFacts, agent.device_id)
        assert facts is not None and facts.battery_level == 0.5
        assert facts.raw_security_info["encryption"] == "active_per_user"
        raw = facts.raw_device_information
        assert raw["battery"] == {"level": 0.5} and raw["os"]["security_patch"] == "2026-10-01"
        assert raw["system_packages"] == ["com.android.settings"]
