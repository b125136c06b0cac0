"""The per-unit auto-wipe policy (issue #6 item 4) over the API and on the console's org unit page:
off by default, 1–720 hours, a reminder shorter than the delay, inherited by the units below,
audited, admin-only to change; and the policy set here is the one the auto-wipe job applies."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

import commands.incidents as hotline
from mdm.ground.models import AuditEvent
from mdm.ground.models.incident import Incident, IncidentPolicy
from tests.hotline.support import opened
from tests.web.conftest import tree  # noqa: F401
from tests.web.helpers import bearer, csrf_of, login, make_token, make_user


def _tokens(session_factory: Any, *roles: str) -> dict[str, dict[str, str]]:
    with session_factory() as session:
        return {role: bearer(make_token(session, role)) for role in roles}


def _url(unit_id: int) -> str:
    return f"/api/v1/org-units/{unit_id}/incident-policy"


def test_off_by_default_set_inherited_and_audited(client, tree, session_factory):  # noqa: F811
    tokens = _tokens(session_factory, "admin", "operator", "approver", "auditor", "dispatch")
    station, unit = tree.station_a.id, tree.unit_a1.id
    fresh = client.get(_url(unit), headers=tokens["approver"])
    assert fresh.status_code == 200
    assert fresh.get_json() == {
        "org_unit_id": unit,
        "own": None,
        "effective": None,
        "auto_wipe_enabled": False,
    }

    put = client.put(
        _url(station), headers=tokens["admin"], json={"auto_wipe_after_hours": 48, "remind_before_hours": 6}
    )
    assert put.status_code == 200, put.get_json()
    body = put.get_json()
    assert body["auto_wipe_enabled"] is True
    assert body["own"]["auto_wipe_after_hours"] == 48 and body["own"]["remind_before_hours"] == 6
    assert body["own"]["updated_by"].endswith("admin test token")
    # The company below the station follows the station's policy.
    below = client.get(_url(unit), headers=tokens["operator"]).get_json()
    assert below["own"] is None and below["auto_wipe_enabled"] is True
    assert (below["effective"]["org_unit_id"], below["effective"]["auto_wipe_after_hours"]) == (station, 48)
    # ...until it turns auto-wipe off for itself (the reminder defaults to two hours).
    off = client.put(_url(unit), headers=tokens["admin"], json={"auto_wipe_after_hours": None})
    assert off.status_code == 200
    assert off.get_json()["auto_wipe_enabled"] is False
    assert off.get_json()["own"]["remind_before_hours"] == 2
    # A one-hour delay gets a reminder shorter than itself when none is given.
    short = client.put(_url(tree.station_b.id), headers=tokens["admin"], json={"auto_wipe_after_hours": 1})
    assert short.status_code == 200 and short.get_json()["own"]["remind_before_hours"] == 0

    with session_factory() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "incident_policy.updated").order_by(AuditEvent.id)
        ).all()
    assert [(e.target_id, e.details) for e in events] == [
        (str(station), {"auto_wipe_after_hours": 48, "remind_before_hours": 6}),
        (str(unit), {"auto_wipe_after_hours": None, "remind_before_hours": 2}),
        (str(tree.station_b.id), {"auto_wipe_after_hours": 1, "remind_before_hours": 0}),
    ]
    # Least privilege: the hotline and approvers read it, only administrators change it.
    for role in ("operator", "approver", "auditor", "dispatch"):
        refused = client.put(_url(unit), headers=tokens[role], json={"auto_wipe_after_hours": 2})
        assert refused.status_code == 403, role
    assert client.get(_url(unit), headers=tokens["dispatch"]).status_code == 403


def test_bad_input_is_400_naming_the_field_and_writes_nothing(client, tree, session_factory):  # noqa: F811
    admin = _tokens(session_factory, "admin")["admin"]
    url = _url(tree.unit_a1.id)
    cases = [
        ({"auto_wipe_after_hours": 0}, "auto_wipe_after_hours"),
        ({"auto_wipe_after_hours": 721}, "auto_wipe_after_hours"),
        ({"auto_wipe_after_hours": "24"}, "auto_wipe_after_hours"),
        ({"auto_wipe_after_hours": 2.5}, "auto_wipe_after_hours"),
        ({"remind_before_hours": 2}, "auto_wipe_after_hours"),  # required (null turns it off)
        ({"auto_wipe_after_hours": 24, "remind_before_hours": -1}, "remind_before_hours"),
        ({"auto_wipe_after_hours": 24, "remind_before_hours": 169}, "remind_before_hours"),
        ({"auto_wipe_after_hours": 24, "remind_before_hours": 24}, "remind_before_hours"),
        ({"auto_wipe_after_hours": 3, "remind_before_hours": 5}, "remind_before_hours"),
    ]
    for body, field in cases:
        response = client.put(url, headers=admin, json=body)
        assert response.status_code == 400, (body, response.get_json())
        assert field in response.get_json()["error"]["fields"], (body, response.get_json())
    assert client.put(url, headers=admin, data="{", content_type="application/json").status_code == 400
    assert client.put(_url(2**31 - 1), headers=admin, json={"auto_wipe_after_hours": 4}).status_code == 404
    assert client.get(_url(2**31 - 1), headers=admin).status_code == 404
    with session_factory() as session:
        assert session.scalars(select(IncidentPolicy)).all() == []
    # At the limits it is accepted.
    assert (
        client.put(
            url, headers=admin, json={"auto_wipe_after_hours": 720, "remind_before_hours": 168}
        ).status_code
        == 200
    )


def test_scoped_admin_sets_policy_only_inside_its_subtree(client, tree, session_factory):  # noqa: F811
    with session_factory() as session:
        scoped = bearer(make_token(session, "admin", org_unit_id=tree.station_a.id))
    assert (
        client.put(_url(tree.unit_a1.id), headers=scoped, json={"auto_wipe_after_hours": 24}).status_code
        == 200
    )
    assert (
        client.put(_url(tree.station_b.id), headers=scoped, json={"auto_wipe_after_hours": 24}).status_code
        == 404
    )
    assert client.get(_url(tree.station_b.id), headers=scoped).status_code == 404


def test_policy_set_over_the_api_drives_the_auto_wipe_job(client, tree, session_factory, frozen_clock):  # noqa: F811
    admin = _tokens(session_factory, "admin")["admin"]
    put = client.put(
        _url(tree.station_a.id), headers=admin, json={"auto_wipe_after_hours": 6, "remind_before_hours": 2}
    )
    assert put.status_code == 200
    with session_factory() as session:
        incident_id = opened(session, session.merge(tree.device_a)).id
        session.commit()
    frozen_clock.advance(hours=4, minutes=1)
    with session_factory() as session:
        report = hotline.run_auto_wipe(session)
        session.commit()
    assert report.reminded == [incident_id] and report.wiped == []
    frozen_clock.advance(hours=2)
    with session_factory() as session:
        report = hotline.run_auto_wipe(session)
        session.commit()
        assert report.wiped == [incident_id]
        incident = session.get(Incident, incident_id)
        assert incident is not None and incident.erase_command_id is not None


def test_console_org_unit_page_shows_and_sets_the_policy(app, tree, session_factory, settings):  # noqa: F811
    with session_factory() as session:
        admin_account = make_user(session, settings, "chief", "admin")
        approver_account = make_user(session, settings, "duty", "approver")
    admin = app.test_client()
    login(admin, admin_account)
    page = f"/console/org-units/{tree.station_a.id}"
    html = admin.get(page).get_data(as_text=True)
    assert (
        'id="incident-policy-form"' in html
        and "無効: この所属の端末は、人が判断したときだけ消去します。" in html
    )
    # Full-width digits, as a Japanese IME types them, are numbers too.
    saved = admin.post(
        page + "/incident-policy",
        data={"auto_wipe_after_hours": "２４", "remind_before_hours": "3", "csrf_token": csrf_of(html)},
    )
    assert saved.status_code == 302
    html = admin.get(page).get_data(as_text=True)
    assert "自動消去: 通報受付から24時間以内に回収されなければ消去します。" in html
    assert "承認者には3時間前に通知します" in html
    # The company below shows the inherited policy.
    below = admin.get(f"/console/org-units/{tree.unit_a1.id}").get_data(as_text=True)
    assert "有効: 通報受付から24時間" in below and "上位の所属の設定を適用" in below

    for bad in (
        {"auto_wipe_after_hours": "721"},
        {"auto_wipe_after_hours": "abc"},
        {"auto_wipe_after_hours": "²"},
    ):
        admin.post(page + "/incident-policy", data={**bad, "csrf_token": csrf_of(admin.get(page).data)})
        assert "時間は1〜720の整数で入力してください" in admin.get(page).get_data(as_text=True)
    admin.post(
        page + "/incident-policy",
        data={
            "auto_wipe_after_hours": "4",
            "remind_before_hours": "4",
            "csrf_token": csrf_of(admin.get(page).data),
        },
    )
    assert "事前通知は0〜168時間で" in admin.get(page).get_data(as_text=True)
    with session_factory() as session:
        policy = session.scalars(
            select(IncidentPolicy).where(IncidentPolicy.org_unit_id == tree.station_a.id)
        ).one()
        assert (policy.auto_wipe_after_hours, policy.remind_before_hours) == (24, 3)

    # Blank hours turn it off.
    admin.post(
        page + "/incident-policy",
        data={"auto_wipe_after_hours": "", "csrf_token": csrf_of(admin.get(page).data)},
    )
    assert "この所属の自動消去を無効にしました。" in admin.get(page).get_data(as_text=True)

    # Approvers see the policy but cannot change it.
    approver = app.test_client()
    login(approver, approver_account)
    html = approver.get(page).get_data(as_text=True)
    assert 'id="incident-policy"' in html and 'id="incident-policy-form"' not in html
    refused = approver.post(
        page + "/incident-policy", data={"auto_wipe_after_hours": "2", "csrf_token": csrf_of(html)}
    )
    assert refused.status_code == 403
