"""The console's OS update views, Japanese first: the unit's policy form (saved, audited, sent to
its tablets; a bad window is refused naming the field), the "who is behind and why" page and the
device page's line."""

from __future__ import annotations

import re

from sqlalchemy import select

from mdm.ground.audit import Actor
from mdm.ground.models import Device, OsUpdatePolicy
from mdm.services import orgunits
from tests.protocol.test_apple_loop import _enroll, _skip_first_inventory, fresh
from tests.web.helpers import login, make_user

ADMIN = Actor("user:admin", "admin", user_id=1)


def _csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_unit_policy_form_behind_page_and_device_line(app, client, ipad, session, settings):
    _enroll(client, ipad)
    _skip_first_inventory(session)
    with app.extensions["hikeshi"].session_factory() as s:
        unit = orgunits.create_unit(s, {"kind": "hq", "name_ja": "本部", "code": "HQ"}, actor=ADMIN)
        device = s.scalars(select(Device).where(Device.udid == ipad.udid)).one()
        orgunits.assign_device(s, device, unit, actor=ADMIN)
        s.commit()
        unit_id, device_id = unit.id, device.id
        admin = make_user(s, settings, "os-admin", "admin")
    console = app.test_client()
    login(console, admin)
    page = console.get(f"/console/org-units/{unit_id}").get_data(as_text=True)
    assert "OS アップデートポリシー" in page
    form = {
        "csrf_token": _csrf(page),
        "target": "17.6.1",
        "deadline": "2030-01-10T23:00",
        "install_time": "08:00",
        "blocked_windows": "07:30-09:00, 17:00-19:00",
        "android_mode": "windowed",
    }
    bad = console.post(
        f"/console/org-units/{unit_id}/os-update-policy", data={**form, "blocked_windows": "朝"}
    )
    assert bad.status_code == 400 and "blocked_windows" in bad.get_data(as_text=True)
    fresh(session)
    assert session.scalars(select(OsUpdatePolicy)).all() == []

    saved = console.post(f"/console/org-units/{unit_id}/os-update-policy", data=form, follow_redirects=True)
    assert saved.status_code == 200
    assert "OS アップデートポリシーを保存し、1 件を端末に送りました。" in saved.get_data(as_text=True)
    fresh(session)
    row = session.scalars(select(OsUpdatePolicy)).one()
    assert row.blocked_windows == [{"start": "07:30", "end": "09:00"}, {"start": "17:00", "end": "19:00"}]
    assert row.deadline.isoformat() == "2030-01-10T14:00:00+00:00"  # 23:00 Japan time

    behind = console.get("/console/os-updates").get_data(as_text=True)
    assert f'id="os-update-{device_id}"' in behind and "遅れあり: インストール予定済み" in behind
    device_page = console.get(f"/console/devices/{device_id}").get_data(as_text=True)
    assert "目標 17.6.1" in device_page and "宣言型デバイス管理 (iOS 17 以降)" in device_page
    audit = console.get("/console/audit").get_data(as_text=True)
    assert "OS アップデートポリシーを変更" in audit
