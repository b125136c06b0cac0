"""The wipe certificate names the erase the device actually performed: Apple's EraseDevice, or for an
Android tablet the agent's WIPE, i.e. DevicePolicyManager.wipeData (docs/android-agent-protocol.md)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import commands.incidents as hotline
from commands.wipe_certificate import certificate_for_incident, render_certificate_html
from tests.hotline.support import APPROVER, acknowledge, wipe_requested
from tests.support.factories import make_device
from tests.support.people import person


def _wiped_certificate(session: Any, platform: str) -> tuple[dict[str, Any], str]:
    device = make_device(session)
    device.platform = platform
    incident = wipe_requested(session, device)
    erase = hotline.approve_wipe(session, incident, actor=person(session, APPROVER))
    acknowledge(session, device, erase.uuid)
    certificate = certificate_for_incident(session, incident)
    assert certificate is not None
    return json.loads(certificate.content), render_certificate_html(certificate.content)


def test_android_certificate_names_the_agents_wipe(session):
    content, page = _wiped_certificate(session, "android")
    method = content["wipe"]["method"]
    assert content["device"]["platform"] == "android"
    assert method.startswith("WIPE (Android agent") and "DevicePolicyManager.wipeData" in method
    assert "WIPE_EXTERNAL_STORAGE" in method
    assert "EraseDevice" not in method and "Apple" not in method
    assert "消去命令(WIPE)を受信し" in page and "acknowledged the server's WIPE command" in page
    assert "EraseDevice" not in page


def test_apple_certificate_names_erase_device(session):
    content, page = _wiped_certificate(session, "apple")
    assert content["wipe"]["method"] == "EraseDevice (Apple MDM; crypto-erase of the device's storage)"
    assert "消去命令(EraseDevice)を受信し" in page and "WIPE" not in page


def test_certificate_page_shows_japan_time_to_the_second_and_the_asset_tag(session):
    device = make_device(session)
    device.asset_tag = "AMB-0042"
    incident = wipe_requested(session, device)
    erase = hotline.approve_wipe(session, incident, actor=person(session, APPROVER))
    acknowledge(session, device, erase.uuid)
    certificate = certificate_for_incident(session, incident)
    assert certificate is not None
    content = json.loads(certificate.content)
    page = render_certificate_html(certificate.content)
    assert content["device"]["asset_tag"] == "AMB-0042"  # signed with the rest
    assert "資産管理番号" in page and "AMB-0042" in page
    acknowledged = datetime.fromisoformat(content["wipe"]["acknowledged_at"].replace("Z", "+00:00"))
    shown = acknowledged.astimezone(timezone(timedelta(hours=9))).strftime("%Y-%m-%d %H:%M:%S JST")
    assert shown in page
    # No UTC ISO timestamp with microseconds on the printed page (the signed JSON keeps them).
    assert not re.search(r"\d{2}:\d{2}:\d{2}\.\d+", page) and "T" + shown[11:19] not in page
