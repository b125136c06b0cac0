"""The OS update API: a unit's update policy (own, inherited, effective; inherited down the tree),
applied at once to the unit's tablets, audited; bad input is a 400 naming the field with nothing
written; scoped users see and change only their units; "who is behind and why"."""

from __future__ import annotations

import plistlib

from sqlalchemy import select

from mdm.ground.audit import Actor
from mdm.ground.models import AuditEvent, Device, OsUpdatePolicy
from mdm.services import orgunits
from tests.protocol.test_apple_loop import _enroll, _skip_first_inventory, fresh
from tests.web.helpers import bearer, make_token

ADMIN = Actor("user:admin", "admin", user_id=1)


def _tree(app):
    with app.extensions["hikeshi"].session_factory() as s:
        hq = orgunits.create_unit(s, {"kind": "hq", "name_ja": "本部", "code": "HQ"}, actor=ADMIN)
        east = orgunits.create_unit(
            s, {"kind": "station", "name_ja": "東署", "code": "E", "parent_id": hq.id}, actor=ADMIN
        )
        west = orgunits.create_unit(
            s, {"kind": "station", "name_ja": "西署", "code": "W", "parent_id": hq.id}, actor=ADMIN
        )
        s.commit()
        return hq.id, east.id, west.id


def test_policy_inherits_applies_and_reports_who_is_behind(app, client, ipad, session):
    hq, east, west = _tree(app)
    _enroll(client, ipad)
    _skip_first_inventory(session)
    with app.extensions["hikeshi"].session_factory() as s:
        device = s.scalars(select(Device).where(Device.udid == ipad.udid)).one()
        orgunits.assign_device(s, device, s.get(orgunits.OrgUnit, east), actor=ADMIN)
        device_id = device.id
        admin = bearer(make_token(s, "admin"))
        west_admin = bearer(make_token(s, "admin", org_unit_id=west))
        dispatch = bearer(make_token(s, "dispatch"))

    body = {
        "target": "17.6.1",
        "deadline": "2030-01-10T23:00:00+09:00",
        "install_time": "08:00",
        "blocked_windows": [{"start": "07:30", "end": "09:00"}],
    }
    answer = client.put(f"/api/v1/org-units/{hq}/os-update-policy", json=body, headers=admin)
    assert answer.status_code == 200, answer.get_json()
    # Applied at once to the tablet in the station below: its declarations changed.
    assert answer.get_json()["queued"] == {"DeclarativeManagement": 1}
    command = plistlib.loads(ipad.connect(client, ipad.idle_body()).data)["Command"]
    assert command["RequestType"] == "DeclarativeManagement"

    inherited = client.get(f"/api/v1/org-units/{east}/os-update-policy", headers=admin).get_json()
    assert inherited["own"]["target"] is None and inherited["effective"]["target"] == "17.6.1"
    assert inherited["effective"]["blocked_windows"] == [{"start": "07:30", "end": "09:00"}]

    listed = client.get("/api/v1/os-updates/devices?behind=true", headers=admin).get_json()
    assert listed["total"] == 1
    [item] = listed["items"]
    assert (item["device_id"], item["os_version"], item["target"]) == (device_id, ipad.os_version, "17.6.1")
    assert item["reason"] == "scheduled" and item["behind"] is True and item["channel"] == "declarative"
    assert item["install_at"] == "2030-01-10T07:00:00"
    one = client.get(f"/api/v1/devices/{device_id}/os-update", headers=dispatch)
    assert one.status_code == 200 and one.get_json()["reason"] == "scheduled"

    # A user scoped to the west station sees neither the east tablet nor the east policy...
    assert client.get("/api/v1/os-updates/devices", headers=west_admin).get_json()["total"] == 0
    assert client.get(f"/api/v1/devices/{device_id}/os-update", headers=west_admin).status_code == 404
    assert (
        client.put(f"/api/v1/org-units/{east}/os-update-policy", json=body, headers=west_admin).status_code
        == 404
    )
    # ...nor the fleet default, and the dispatch system changes nothing.
    assert client.put("/api/v1/os-update-policy/default", json=body, headers=west_admin).status_code == 403
    assert (
        client.put(f"/api/v1/org-units/{west}/os-update-policy", json=body, headers=dispatch).status_code
        == 403
    )

    fresh(session)
    [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "os_update.policy_changed")).all()
    assert event.target_id == str(hq) and event.details["target"] == "17.6.1"


def test_bad_input_names_the_field_and_writes_nothing(app, client, session):
    hq, _east, _west = _tree(app)
    with app.extensions["hikeshi"].session_factory() as s:
        admin = bearer(make_token(s, "admin"))
    for body, field in (
        ({"target": "soon"}, "target"),
        ({"install_time": "8am"}, "install_time"),
        ({"blocked_windows": [{"start": "07:30", "end": "07:30"}]}, "blocked_windows"),
        ({"android_mode": "daily"}, "android_mode"),
        ({"deadline": "2030-01-10T23:00:00"}, "deadline"),
        ({}, "_schema"),
    ):
        answer = client.put(f"/api/v1/org-units/{hq}/os-update-policy", json=body, headers=admin)
        assert answer.status_code in (400, 422), body
        assert field in answer.get_data(as_text=True), (field, answer.get_json())
    fresh(session)
    assert session.scalars(select(OsUpdatePolicy)).all() == []
