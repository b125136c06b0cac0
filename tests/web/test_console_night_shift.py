"""Small things a night shift trips on: the device list's asset-tag column, the org tree naming a
隊's unit type, and alerts that name the tablet by name and asset tag (never "#1") with a title in
the reader's language."""

from __future__ import annotations

from typing import Any

from mdm.ground.models import Device
from mdm.services.alerts.service import raise_alert
from tests.web.helpers import login, make_user


def test_asset_tag_column_unit_type_and_alerts_naming_the_tablet(
    app: Any, session_factory: Any, settings: Any, tree: Any
) -> None:
    with session_factory() as session:
        admin = make_user(session, settings, "admin1", "admin")
        device = session.get(Device, tree.device_a.id)
        device.asset_tag = "AMB-0001"
        bilingual = raise_alert(
            session,
            "compliance.profile_missing",
            "warning",
            "構成プロファイル未インストール: マイナ救急 / Profile missing: マイナ救急",
            device=device,
        )
        english_only = raise_alert(
            session,
            "backup.failed",
            "critical",
            "Scheduled backup failed: disk full",
            details={"error": "disk full"},
        )
        session.commit()
        bilingual_id, english_id = bilingual.id, english_only.id
    client = app.test_client()
    login(client, admin)

    devices = client.get("/console/devices").get_data(as_text=True)
    assert "<th>資産番号</th>" in devices and '<td class="asset-tag">AMB-0001</td>' in devices

    tree_page = client.get("/console/org-units").get_data(as_text=True)
    assert '隊 <span class="unit-type">(救急隊)</span>' in tree_page

    alerts = client.get("/console/alerts").get_data(as_text=True)
    assert "構成プロファイル未インストール: マイナ救急" in alerts and "Profile missing" not in alerts
    assert "救急1 iPad (AMB-0001)</a>" in alerts and f">#{tree.device_a.id}</a>" not in alerts
    assert "定期バックアップに失敗しました: disk full" in alerts
    one = client.get(f"/console/alerts/{bilingual_id}").get_data(as_text=True)
    assert "救急1 iPad (AMB-0001)</a>" in one
    client.set_cookie("hikeshi_lang", "en")
    english = client.get(f"/console/alerts/{english_id}").get_data(as_text=True)
    assert "Scheduled backup failed: disk full" in english
    assert "Profile missing: マイナ救急" in client.get("/console/alerts").get_data(as_text=True)
