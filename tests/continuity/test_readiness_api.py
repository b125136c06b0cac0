"""The readiness API: the poller's view, resuming from an event id (as a stream or a page), plan
CRUD with errors naming the field, spares, the swap's refusals, and scoped tokens."""

from __future__ import annotations

import pytest

from commands.incidents import open_incident
from mdm.services.continuity import mark_spare
from tests.continuity.helpers import ADMIN, OPERATOR, build_tree, tablet
from tests.web.helpers import bearer, make_token


@pytest.fixture
def setup(app, session):
    tree = build_tree(session)
    a3 = tablet(session, tree.ambulance3, "救急3 iPad")
    spare = tablet(session, tree.central, "中央 予備機")
    mark_spare(session, spare, actor=ADMIN)
    session.commit()
    tokens = {role: bearer(make_token(session, role)) for role in ("admin", "operator", "dispatch")}
    return tree, a3, spare, tokens


def parse_sse(text: str) -> tuple[list[tuple[int, str]], list[str]]:
    events, comments = [], []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                comments.append(line)
            else:
                key, _, value = line.partition(": ")
                fields[key] = value
        if "id" in fields:
            events.append((int(fields["id"]), fields["data"]))
    return events, comments


def test_poll_then_resume_by_stream_and_by_page(client, session, setup):
    _tree, a3, _spare, tokens = setup
    start = client.get("/api/v1/readiness", headers=tokens["dispatch"]).get_json()
    units = {u["unit_code"]: u for u in start["units"]}
    assert units["A3"]["state"] == "ready" and units["P1"]["state"] == "degraded"
    assert units["P1"]["spares_available"] == 1 and units["P1"]["station_name_ja"] == "中央署"
    assert {s["name_ja"]: s["state"] for s in start["stations"]} == {"中央署": "degraded", "北署": "critical"}
    assert start["hq"][0]["counts"] == {"ready": 1, "degraded": 2, "critical": 1}

    open_incident(session, a3, {"caller_name": "救急3隊"}, actor=OPERATOR)
    session.commit()

    # Without Accept: text/event-stream the stream answers what happened since the id, and ends.
    response = client.get(
        "/api/v1/readiness/stream",
        headers={**tokens["dispatch"], "Last-Event-ID": str(start["last_event_id"])},
    )
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    events, comments = parse_sse(response.get_data(as_text=True))
    assert comments and len(events) == 1
    page = client.get(f"/api/v1/readiness/events?after={start['last_event_id']}", headers=tokens["dispatch"])
    [item] = page.get_json()["items"]
    event_id, data = events[0]
    assert item["event_id"] == event_id and item["unit"]["code"] == "A3" and item["state"] == "degraded"
    assert f'"event_id": {event_id}' in data
    assert page.get_json()["last_event_id"] == event_id
    # The query parameter works for clients that cannot set headers (a browser's EventSource).
    again = client.get(f"/api/v1/readiness/stream?last_event_id={event_id}", headers=tokens["dispatch"])
    assert parse_sse(again.get_data(as_text=True))[0] == []


def test_bad_resume_points_are_refused_naming_the_field(client, setup):
    tokens = setup[3]
    response = client.get("/api/v1/readiness/stream", headers={**tokens["dispatch"], "Last-Event-ID": "abc"})
    assert response.status_code == 400 and "Last-Event-ID" in response.get_json()["error"]["fields"]
    response = client.get("/api/v1/readiness/stream?lifetime=0", headers=tokens["dispatch"])
    assert response.status_code == 400 and "lifetime" in response.get_json()["error"]["fields"]
    response = client.get("/api/v1/readiness/events?after=-1", headers=tokens["dispatch"])
    assert response.status_code == 400 and "after" in response.get_json()["error"]["fields"]
    # Event ids are 32-bit columns: a larger resume point is bad input, never a database error.
    response = client.get(f"/api/v1/readiness/events?after={2**63 - 2}", headers=tokens["dispatch"])
    assert response.status_code == 400 and "after" in response.get_json()["error"]["fields"]
    huge = {**tokens["dispatch"], "Last-Event-ID": str(2**31)}
    response = client.get("/api/v1/readiness/stream", headers=huge)
    assert response.status_code == 400 and "Last-Event-ID" in response.get_json()["error"]["fields"]


def test_plan_crud_and_validation(client, session, setup):
    tree, _a3, _spare, tokens = setup
    url = f"/api/v1/org-units/{tree.command.id}/continuity-plan"
    default = client.get(url, headers=tokens["dispatch"]).get_json()
    assert default["is_default"] and default["required_working"] == 2
    bad = client.put(
        url,
        json={
            "required_working": -1,
            "max_seen_minutes": 60,
            "min_battery_percent": 20,
            "ignored_rules": ["x"],
        },
        headers=tokens["admin"],
    )
    assert bad.status_code == 400
    assert set(bad.get_json()["error"]["fields"]) == {"required_working", "ignored_rules"}
    missing = client.put(url, json={}, headers=tokens["admin"])
    assert set(missing.get_json()["error"]["fields"]) == {
        "required_working",
        "max_seen_minutes",
        "min_battery_percent",
    }
    good = {"required_working": 0, "max_seen_minutes": 30, "min_battery_percent": 0}
    for not_a_boolean in (0, 1, "yes"):
        guessed = client.put(url, json={**good, "require_compliant": not_a_boolean}, headers=tokens["admin"])
        assert guessed.status_code == 400 and "require_compliant" in guessed.get_json()["error"]["fields"]
    saved = client.put(url, json=good, headers=tokens["admin"])
    assert saved.status_code == 200 and saved.get_json()["is_default"] is False
    units = {
        u["unit_code"]: u
        for u in client.get("/api/v1/readiness", headers=tokens["admin"]).get_json()["units"]
    }
    assert units["C1"]["state"] == "ready" and units["C1"]["plan"]["max_seen_minutes"] == 30
    station = client.put(
        f"/api/v1/org-units/{tree.central.id}/continuity-plan", json=good, headers=tokens["admin"]
    )
    assert station.status_code == 400 and "org_unit_id" in station.get_json()["error"]["fields"]
    assert (
        client.get(
            f"/api/v1/org-units/{tree.central.id}/continuity-plan", headers=tokens["admin"]
        ).status_code
        == 404
    )
    assert client.put(url, json=good, headers=tokens["dispatch"]).status_code == 403


def test_spares_and_swap_refusals(client, session, setup):
    tree, a3, spare, tokens = setup
    listed = client.get("/api/v1/readiness/spares", headers=tokens["dispatch"]).get_json()
    central = {s["name_ja"]: s for s in listed}["中央署"]
    assert central["available"] == 1 and central["spares"][0]["device_id"] == spare.id
    in_unit = client.put(f"/api/v1/readiness/spares/{a3.id}", json={"spare": True}, headers=tokens["admin"])
    assert in_unit.status_code == 400 and "spare_device_id" in in_unit.get_json()["error"]["fields"]
    assert (
        client.put(f"/api/v1/readiness/spares/{spare.id}", json={}, headers=tokens["admin"]).status_code
        == 400
    )

    swap = "/api/v1/readiness/spare-swap"
    cases = [
        ({"spare_device_id": a3.id, "unit_id": tree.pump.id}, "spare_device_id"),
        ({"spare_device_id": spare.id, "unit_id": tree.central.id}, "unit_id"),
        ({"spare_device_id": spare.id, "unit_id": 99999}, "unit_id"),
        ({"spare_device_id": spare.id, "unit_id": tree.pump.id, "incident_id": 99999}, "incident_id"),
        ({"spare_device_id": "1", "unit_id": tree.pump.id}, "spare_device_id"),
        ({"unit_id": tree.pump.id}, "spare_device_id"),
    ]
    for body, field in cases:
        response = client.post(swap, json=body, headers=tokens["operator"])
        assert response.status_code == 400, (body, response.get_json())
        assert field in response.get_json()["error"]["fields"], (body, response.get_json())
    ok = client.post(
        swap, json={"spare_device_id": spare.id, "unit_id": tree.pump.id}, headers=tokens["operator"]
    )
    assert ok.status_code == 200 and ok.get_json()["unit"]["unit_code"] == "P1"
    assert (
        client.post(
            swap, json={"spare_device_id": spare.id, "unit_id": tree.pump.id}, headers=tokens["operator"]
        ).status_code
        == 400
    )


def test_a_scoped_dispatch_token_sees_only_its_station(client, session, setup):
    tree, a3, _spare, _tokens = setup
    north = bearer(make_token(session, "dispatch", org_unit_id=tree.north.id, name="north dispatch"))
    units = client.get("/api/v1/readiness", headers=north).get_json()["units"]
    assert [u["unit_code"] for u in units] == ["N1"]
    open_incident(session, a3, {"caller_name": "救急3隊"}, actor=OPERATOR)
    session.commit()
    items = client.get("/api/v1/readiness/events", headers=north).get_json()["items"]
    assert {i["unit"]["code"] for i in items} == {"N1"}  # not the loss at 中央署
    assert (
        client.get(f"/api/v1/org-units/{tree.ambulance3.id}/continuity-plan", headers=north).status_code
        == 404
    )
    assert client.get("/api/v1/readiness/spares", headers=north).get_json()[0]["name_ja"] == "北署"
