"""The console's inventory, compliance, apps and alert pages, in Japanese, fed by a simulated iPad
that enrolled and answered its inventory over the real Apple protocol (see test_inventory_api)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from commands.inventory_refresh import INVENTORY_KINDS
from mdm.ground.models import Alert, AuditEvent, Command, CommandStatus, Device
from mdm.roots.scheduler.jobs import JobContext, webhook_delivery
from tests.web.helpers import login, make_user, post_form
from tests.web.test_inventory_api import BLOCKED, TRIAGE, Fleet, app_entry, drain, enrolled_fleet


@pytest.fixture
def fleet(app: Any, client: Any, ipad: Any, tree: Any) -> Iterator[Fleet]:
    with enrolled_fleet(app, client, ipad, tree) as enrolled:
        yield enrolled


def user(fleet: Fleet, settings: Any, name: str, role: str, **kwargs: Any) -> Any:
    # Written through the app's own (immediate) sessions: the dispatcher thread may be writing too.
    with fleet.factory() as s:
        return make_user(s, settings, name, role, **kwargs)


def _row(html: str, attribute: str, value: str) -> str:
    match = re.search(rf'<tr[^>]*{attribute}="{re.escape(value)}"[^>]*>(.*?)</tr>', html, re.S)
    assert match, f"no row {attribute}={value}"
    return match.group(1)


def _tile(html: str, tile_id: str) -> int:
    match = re.search(rf'id="{tile_id}"><span class="n">(\d+)</span>', html)
    assert match, f"no tile {tile_id}"
    return int(match.group(1))


def test_device_page_shows_inventory_with_the_unauthorized_app_marked(
    client: Any, fleet: Fleet, session: Any, settings: Any, ipad: Any
) -> None:
    login(client, user(fleet, settings, "chief", "admin"))
    page = client.get(f"/console/devices/{fleet.device_id}").get_data(as_text=True)
    assert "非準拠" in page and "重大" in page  # compliance badge: non-compliant (critical)
    blocked = _row(page, "data-identifier", BLOCKED)
    assert "許可外" in blocked and "禁止リストに登録" in blocked and "Fun Game" in blocked
    assert "許可外" not in _row(page, "data-identifier", TRIAGE)
    assert "アプリ制限" in page and "jp.fire.test.apps" in page  # installed profile
    assert "CN=ipad-1" in page  # certificate subject
    assert "a4:83:e7:00:00:01" in page and "82%" in page  # facts
    assert "許可されていないアプリ" in page  # the open finding, by its rule's name
    assert 'id="refresh-inventory"' in page and "インベントリを更新" in page

    # The game is removed: the history says so and the finding shows as closed.
    client.post(f"/api/v1/devices/{fleet.device_id}/inventory/refresh")  # no token: refused, nothing queued
    with fleet.factory() as s:
        from commands.inventory_refresh import queue_inventory_refresh
        from tests.inventory.helpers import ADMIN

        queue_inventory_refresh(s, s.get(Device, fleet.device_id), ADMIN, kinds=["InstalledApplicationList"])
        s.commit()
    drain(client, ipad, [app_entry(TRIAGE, "Triage")])
    page = client.get(f"/console/devices/{fleet.device_id}").get_data(as_text=True)
    assert "アプリ削除" in page and BLOCKED in page
    assert 'class="finding-closed"' in page and 'class="finding-open"' not in page
    assert "準拠" in page and "非準拠" not in page.split('id="device-compliance"')[1][:200]


def test_refresh_inventory_button_queues_each_kind_once(
    client: Any, fleet: Fleet, session: Any, settings: Any
) -> None:
    login(client, user(fleet, settings, "chief", "admin"))
    path = f"/console/devices/{fleet.device_id}"
    for _ in range(2):
        response = post_form(client, f"{path}/inventory/refresh", {}, page=path)
        assert response.status_code == 302 and response.headers["Location"].endswith(path)
    assert "インベントリを要求しました" in client.get(path).get_data(as_text=True)
    session.rollback()
    session.expire_all()
    pending = session.scalars(
        select(Command.request_type).where(
            Command.device_id == fleet.device_id, Command.status.in_(CommandStatus.PENDING)
        )
    ).all()
    assert sorted(pending) == sorted(INVENTORY_KINDS)


def test_operator_sees_no_refresh_button_and_cannot_post_it(
    client: Any, fleet: Fleet, session: Any, settings: Any
) -> None:
    login(client, user(fleet, settings, "hotline", "operator"))
    path = f"/console/devices/{fleet.device_id}"
    page = client.get(path).get_data(as_text=True)
    assert 'id="refresh-inventory"' not in page and "許可外" in page
    assert post_form(client, f"{path}/inventory/refresh", {}, page=path).status_code == 403


def test_devices_list_filters_by_compliance_and_app(
    client: Any, fleet: Fleet, session: Any, settings: Any, tree: Any
) -> None:
    login(client, user(fleet, settings, "chief", "admin"))
    name = session.get(Device, fleet.device_id).device_name

    noncompliant = client.get("/console/devices?compliance=noncompliant").get_data(as_text=True)
    assert name in noncompliant and "救急1 iPad" not in noncompliant
    unknown = client.get("/console/devices?compliance=unknown").get_data(as_text=True)
    assert name not in unknown and "救急1 iPad" in unknown
    has_app = client.get(f"/console/devices?app={BLOCKED}").get_data(as_text=True)
    assert name in has_app and "北1 iPad" not in has_app
    assert name not in client.get("/console/devices?app=com.example.none").get_data(as_text=True)
    bad = client.get("/console/devices?compliance=green")
    assert bad.status_code == 200 and 'role="alert"' in bad.get_data(as_text=True)


def test_apps_page_counts_devices_and_unauthorized(
    client: Any, fleet: Fleet, session: Any, settings: Any, tree: Any
) -> None:
    login(client, user(fleet, settings, "chief", "admin"))
    page = client.get("/console/apps").get_data(as_text=True)
    assert "全端末のアプリ" in page
    blocked = _row(page, "data-identifier", BLOCKED)
    assert re.search(r'data-field="devices">1<', blocked) and "1 件のアプリ" not in blocked
    assert "許可外" not in blocked and 'class="state state-error"' in blocked
    triage = _row(page, "data-identifier", TRIAGE)
    assert 'data-field="unauthorized"><span class="muted">0' in triage
    only = client.get("/console/apps?unauthorized=true").get_data(as_text=True)
    assert BLOCKED in only and TRIAGE not in only
    # A user of the other station sees no app of this one.
    post_form(client, "/console/logout", {}, page="/console/dashboard")
    north = user(fleet, settings, "north", "auditor", org_unit_id=tree.station_b.id)
    login(client, north)
    assert BLOCKED not in client.get("/console/apps").get_data(as_text=True)


def test_alerts_page_acknowledge_with_comment_and_dashboard_counts(
    client: Any, fleet: Fleet, session: Any, settings: Any
) -> None:
    assert webhook_delivery(JobContext(fleet.factory, fleet.settings, "test"))["delivered"] == 1
    login(client, user(fleet, settings, "chief", "admin"))
    dashboard = client.get("/console/dashboard").get_data(as_text=True)
    assert _tile(dashboard, "tile-noncompliant") == 1 and _tile(dashboard, "tile-open-alerts") == 1

    listing = client.get("/console/alerts").get_data(as_text=True)
    [alert_id] = session.scalars(select(Alert.id)).all()
    row = _row(listing, "data-alert", str(alert_id))
    assert BLOCKED in row and "重大" in row and 'name="comment"' in row

    detail = client.get(f"/console/alerts/{alert_id}").get_data(as_text=True)
    delivery = re.search(r'<tr data-delivery="\d+">(.*?)</tr>', detail, re.S)
    assert delivery and "dispatch-center" in delivery.group(1) and "配信済み" in delivery.group(1)
    assert "HTTP 200" in delivery.group(1) and 'data-field="attempts">1<' in delivery.group(1)

    refused = post_form(
        client, f"/console/alerts/{alert_id}/acknowledge", {"comment": " "}, page="/console/alerts"
    )
    assert refused.status_code == 302
    session.rollback()
    session.expire_all()
    assert session.get(Alert, alert_id).acknowledged_at is None

    done = post_form(
        client,
        f"/console/alerts/{alert_id}/acknowledge",
        {"comment": "隊長に連絡しゲームを削除", "back": "/console/alerts"},
        page="/console/alerts",
    )
    assert done.status_code == 302 and done.headers["Location"].endswith("/console/alerts")
    session.rollback()
    session.expire_all()
    acknowledged = session.get(Alert, alert_id)
    assert acknowledged.acknowledge_comment == "隊長に連絡しゲームを削除"
    assert acknowledged.acknowledged_by == "user:chief"
    assert session.scalars(select(AuditEvent).where(AuditEvent.action == "alert.acknowledged")).one()
    assert "警告を確認済みにしました" in client.get("/console/alerts?state=").get_data(as_text=True)
    assert _tile(client.get("/console/dashboard").get_data(as_text=True), "tile-open-alerts") == 0
    assert str(alert_id) not in client.get("/console/alerts").get_data(as_text=True).split("alert-table")[1]


def test_auditor_reads_alerts_but_cannot_acknowledge(
    client: Any, fleet: Fleet, session: Any, settings: Any
) -> None:
    login(client, user(fleet, settings, "reader", "auditor"))
    [alert_id] = session.scalars(select(Alert.id)).all()
    listing = client.get("/console/alerts").get_data(as_text=True)
    assert BLOCKED in listing and 'name="comment"' not in listing
    response = post_form(
        client, f"/console/alerts/{alert_id}/acknowledge", {"comment": "x"}, page="/console/alerts"
    )
    assert response.status_code == 403
    assert 'id="tile-open-alerts"' in client.get("/console/dashboard").get_data(as_text=True)
