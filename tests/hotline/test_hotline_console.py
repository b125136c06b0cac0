"""The hotline console pages through the Flask test client: search (in scope only), open + lock in
one step, the live JSON the page polls, the two-person rule, break glass for admins only, and a
wipe that was never delivered shown as such."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from mdm.ground.models.incident import Incident
from tests.hotline.support import opened as opened_incident
from tests.web.conftest import tree  # noqa: F401
from tests.web.helpers import csrf_of, login, make_user


def _client(app: Any, session_factory: Any, settings: Any, username: str, role: str, **kwargs: Any) -> Any:
    # The app's own factory (BEGIN IMMEDIATE on SQLite): the test's read-mostly one reads before it
    # writes, and fails on a stale snapshot when the app's push thread has committed meanwhile.
    with app.extensions["hikeshi"].session_factory() as session:
        account = make_user(session, settings, username, role, **kwargs)
    client = app.test_client()
    login(client, account)
    return client


def _post(client: Any, path: str, data: dict[str, Any], page: str) -> Any:
    return client.post(path, data={**data, "csrf_token": csrf_of(client.get(page).data)})


def test_search_lock_and_two_person_wipe_in_the_console(app, tree, session_factory, settings):  # noqa: F811
    operator = _client(app, session_factory, settings, "op", "operator", org_unit_id=tree.station_a.id)
    search = operator.get("/console/hotline?q=中央救急隊").get_data(as_text=True)
    assert "救急1 iPad" in search and "今すぐロック" in search and "autofocus" in search
    # Scoped to station A: the north station's tablet is not found, even by its exact serial.
    assert "北1 iPad" not in operator.get("/console/hotline?q=SERIALB0002").get_data(as_text=True)
    with session_factory() as session:
        foreign = opened_incident(session, session.merge(tree.device_b))
        session.commit()
    assert operator.get(f"/console/hotline/incidents/{foreign.id}").status_code == 404
    assert operator.get(f"/console/hotline/incidents/{foreign.id}/live.json").status_code == 404

    page = "/console/hotline?q=SERIALA0001"
    opened = _post(
        operator,
        f"/console/hotline/devices/{tree.device_a.id}/incident",
        {"caller_name": "山田 太郎", "caller_unit": "救急3隊", "kind": "stolen", "action": "lock"},
        page,
    )
    assert opened.status_code == 302 and "/console/hotline/incidents/" in opened.headers["Location"]
    url = opened.headers["Location"]
    incident_page = operator.get(url).get_data(as_text=True)
    assert "紛失モードを送信しました" in incident_page and "山田 太郎" in incident_page
    assert f"/console/continuity/swap?unit_id={tree.unit_a1.id}&amp;incident_id=" in incident_page
    assert 'id="approve-wipe"' not in incident_page and 'id="break-glass"' not in incident_page
    live = operator.get(url + "/live.json").get_json()
    assert live["status"] == "open" and live["commands"][0]["state"] in ("queued", "pushed")
    assert live["timeline"][0]["text"] == "通報受付・事案を登録"

    assert _post(operator, url + "/wipe-request", {"reason": "盗難"}, url).status_code == 302
    admin = _client(app, session_factory, settings, "chief", "admin")
    assert 'id="break-glass"' in admin.get(url).get_data(as_text=True)
    # The admin requested nothing here, but approves; first the requester tries and is refused.
    operator_approves = operator.post(
        url + "/wipe-approve", data={"csrf_token": csrf_of(operator.get(url).data)}
    )
    assert operator_approves.status_code == 403
    # The approver's dashboard and navigation show the request; approving asks first, naming the
    # tablet and the requester.
    dashboard = admin.get("/console/dashboard").get_data(as_text=True)
    assert 'id="nav-approvals-count">1<' in dashboard and "救急1 iPad" in dashboard and "盗難" in dashboard
    asked = _post(admin, url + "/wipe-approve", {}, url)
    assert asked.status_code == 200
    question = asked.get_data(as_text=True)
    assert "救急1 iPad" in question and "SERIALA0001" in question and "op" in question
    assert 'id="confirm-button"' in question
    assert "消去承認済み" not in admin.get(url).get_data(as_text=True)  # nothing sent yet
    approved = _post(admin, url + "/wipe-approve", {"confirmed": "yes"}, url)
    assert approved.status_code == 302
    dashboard = admin.get("/console/dashboard").get_data(as_text=True)
    assert 'id="nav-approvals-count">0<' in dashboard and 'id="no-pending-wipes"' in dashboard
    after = admin.get(url).get_data(as_text=True)
    assert "消去承認済み・未実行" in after and "未配信" in after
    assert admin.get(url + "/certificate.json").status_code == 404
    admin.set_cookie("hikeshi_lang", "en")
    english = admin.get(url).get_data(as_text=True)
    assert "Wipe approved, not yet confirmed" in english and "the device has not fetched it" in english
    assert admin.get(url + "/live.json").get_json()["status_label"] == "Wipe approved, not yet confirmed"


def test_the_requester_cannot_approve_and_break_glass_needs_a_reason(app, tree, session_factory, settings):  # noqa: F811
    admin = _client(app, session_factory, settings, "chief", "admin")
    opened = _post(
        admin,
        f"/console/hotline/devices/{tree.device_b.id}/incident",
        {"caller_name": "佐藤", "action": "open"},
        "/console/hotline?q=SERIALB0002",
    )
    url = opened.headers["Location"]
    _post(admin, url + "/wipe-request", {}, url)
    refused = _post(admin, url + "/wipe-approve", {}, url)
    assert refused.status_code == 302
    assert "申請した本人は承認できません" in admin.get(url).get_data(as_text=True)
    no_reason = _post(admin, url + "/break-glass", {"reason": "  "}, url)
    assert no_reason.status_code == 302
    assert "理由の入力が必要です" in admin.get(url).get_data(as_text=True)
    _post(admin, url + "/break-glass", {"reason": "情報流出の危険"}, url)
    page = admin.get(url).get_data(as_text=True)
    assert "緊急単独実行" in page and 'class="tl-step flagged"' in page
    with session_factory() as session:
        incident = session.scalars(select(Incident)).one()
        assert incident.break_glass and incident.break_glass_reason == "情報流出の危険"
