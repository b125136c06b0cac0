"""The console's app pages (issue 21 §6), in Japanese first: an administrator adds an App Store
app, uploads an APK (its hash and signer shown), requires it for a unit with a configuration, sets
the unit to remove blocked apps; the tablet's page says what it has and why. A user without
app.write sees the catalog and changes nothing."""

from __future__ import annotations

import hashlib
import io

from sqlalchemy import select

from mdm.ground.models import App, UnitAppRule, UnitAppSettings
from tests.apps.packages import build_apk, signer
from tests.apps.support import enroll_into, make_unit
from tests.web.helpers import csrf_of, login, make_user


def test_an_administrator_keeps_the_catalog_and_a_unit_in_japanese(app, client, settings, device_ca):
    factory = app.extensions["hikeshi"].session_factory
    with factory() as s:
        admin = make_user(s, settings, "kanri", "admin")
        auditor = make_user(s, settings, "kansa", "auditor")
    unit_id = make_unit(app, "MINAMI")
    login(client, admin)
    page = client.get("/console/app-catalog")
    assert (
        page.status_code == 200
        and "アプリカタログ" in page.text
        and "カタログにアプリはありません" in page.text
    )
    token = csrf_of(page.data)
    added = client.post(
        "/console/app-catalog/store",
        data={"csrf_token": token, "itunes_store_id": "987654", "identifier": "jp.fire.maps", "name": "地図"},
    )
    assert added.status_code == 302
    bad = client.post(
        "/console/app-catalog/store",
        data={"csrf_token": token, "itunes_store_id": "x", "identifier": "jp.fire.x", "name": "x"},
    )
    assert bad.status_code == 400 and "App Store ID (数字)" in bad.text
    apk = build_apk("jp.fire.dispatch", 7, "7.0", signed_by=signer("dispatch"))
    uploaded = client.post(
        "/console/app-catalog/upload",
        data={"csrf_token": token, "kind": "android_apk", "file": (io.BytesIO(apk), "dispatch.apk")},
        content_type="multipart/form-data",
    )
    assert uploaded.status_code == 302
    listing = client.get("/console/app-catalog").text
    assert hashlib.sha256(apk).hexdigest() in listing and "(v2)" in listing
    with factory() as s:
        maps = s.scalars(select(App).where(App.identifier == "jp.fire.maps")).one()
    unit_page = client.get(f"/console/app-catalog/units/{unit_id}")
    assert "MINAMI消防署 のアプリ" in unit_page.text
    token = csrf_of(unit_page.data)
    required = client.post(
        f"/console/app-catalog/units/{unit_id}/rules",
        data={
            "csrf_token": token,
            "action": "required",
            "app_id": str(maps.id),
            "configuration": '{"Station": "{station_name}"}',
        },
    )
    assert required.status_code == 302
    typo = client.post(
        f"/console/app-catalog/units/{unit_id}/rules",
        data={
            "csrf_token": token,
            "action": "required",
            "app_id": str(maps.id),
            "configuration": '{"S": "{statoin}"}',
        },
    )
    assert typo.status_code == 400 and "statoin" in typo.text
    assert (
        client.post(
            f"/console/app-catalog/units/{unit_id}/block-action",
            data={"csrf_token": token, "block_action": "remove"},
        ).status_code
        == 302
    )
    with factory() as s:
        [rule] = s.scalars(select(UnitAppRule)).all()
        assert rule.configuration == {"Station": "{station_name}"}
        assert s.get(UnitAppSettings, unit_id).block_action == "remove"

    # The tablet's page: the store app is required, and not installed because no license exists.
    _ipad, device_id = enroll_into(app, device_ca, "ipad-console", unit_id)
    assert f"/console/devices/{device_id}/app-state" in client.get(f"/console/devices/{device_id}").text
    state = client.get(f"/console/devices/{device_id}/app-state").text
    assert "未インストール" in state and "license not available" in state

    # An auditor reads, and cannot change.
    other = app.test_client()
    login(other, auditor)
    assert other.get("/console/app-catalog").status_code == 200
    token = csrf_of(other.get("/console/app-catalog").data)
    refused = other.post(
        "/console/app-catalog/store",
        data={"csrf_token": token, "itunes_store_id": "1", "identifier": "jp.fire.evil", "name": "x"},
    )
    assert refused.status_code == 403
    with factory() as s:
        assert s.scalars(select(App).where(App.identifier == "jp.fire.evil")).first() is None
