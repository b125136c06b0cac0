"""Location reporting as an explicit per-unit field of the agent policy (`reporting.location`):
inherited down the tree, off where no unit decided, set through the API (audited), and a position
sent where it is off is not kept."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from mdm.ground.models import AuditEvent, DeviceFacts, DeviceMessage
from mdm.services.android_channel.location_reporting import NOT_KEPT, without_inventory_location
from tests.web.helpers import bearer
from tests.web.helpers import make_token as api_token


def _stored_bodies(session: Any, device_id: int) -> list[bytes]:
    return list(session.scalars(select(DeviceMessage.raw).where(DeviceMessage.device_id == device_id)))


def test_location_reporting_is_a_unit_field_of_the_policy(
    enroll_app: Any, agent_factory: Any, android_token: Any, session: Any, tree: Any
) -> None:
    agent = agent_factory(serial_number="R52TLOC0001")
    agent.enroll(android_token(tree.ambulance))
    assert agent.policy_reporting == {"location": False}
    agent.send_location_anyway = True  # a faulty agent: its inventory carries a location anyway
    agent.sync()
    session.rollback()
    session.expire_all()
    assert "location" not in session.get(DeviceFacts, agent.device_id).raw_device_information
    # Nor in the sync body kept as evidence: the position is replaced, the rest is as received.
    stored = _stored_bodies(session, agent.device_id)
    assert stored and not any(b"35.6812" in raw for raw in stored)
    assert any(NOT_KEPT.encode() in raw for raw in stored)

    hikeshi = enroll_app.extensions["hikeshi"]
    with hikeshi.session_factory() as s:
        headers = bearer(api_token(s, "admin"))
    api = enroll_app.test_client()
    url = f"/api/v1/org-units/{tree.station.id}/android-location-reporting"
    bad = api.put(url, json={"location_reporting": "yes"}, headers=headers)
    assert bad.status_code in (400, 422) and "location_reporting" in str(bad.get_json())
    on = api.put(url, json={"location_reporting": True}, headers=headers)
    assert on.status_code == 200 and on.get_json() == {"location_reporting": True, "effective": True}

    # The ambulance (below the station) inherits it: a new policy version with the field set.
    old_version = agent.policy_version
    answer = agent.sync(inventory=True)
    assert answer["policy_version"] != old_version and agent.policy_reporting == {"location": True}
    agent.sync(inventory=True)
    session.rollback()
    session.expire_all()
    assert session.get(DeviceFacts, agent.device_id).raw_device_information["location"]["latitude"] == 35.6812
    assert b"35.6812" in _stored_bodies(session, agent.device_id)[-1]  # the unit collects it now
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "android.location_reporting_changed")
    ).one()
    assert event.details == {"before": None, "after": True, "effective": True}

    # The unit itself says no: its own value wins over the station's, and the kept position goes.
    own = f"/api/v1/org-units/{tree.ambulance.id}/android-location-reporting"
    assert api.put(own, json={"location_reporting": False}, headers=headers).get_json()["effective"] is False
    agent.sync(inventory=True)
    assert agent.policy_reporting == {"location": False}
    # Not even the sync that brought the change keeps it: the setting is read anew, not taken from
    # the device's last policy (mdm.services.android_channel.policy.unit_reports_location).
    session.rollback()
    assert b"35.6812" not in _stored_bodies(session, agent.device_id)[-1]
    agent.sync(inventory=True)
    session.rollback()
    session.expire_all()
    assert "location" not in session.get(DeviceFacts, agent.device_id).raw_device_information


def test_location_reporting_takes_json_booleans_only(enroll_app: Any, session: Any, tree: Any) -> None:
    """0 and 1 are a client's mistake, refused naming the field; nothing is written (schemathesis
    found 0 accepted)."""
    with enroll_app.extensions["hikeshi"].session_factory() as s:
        headers = bearer(api_token(s, "admin"))
    api = enroll_app.test_client()
    url = f"/api/v1/org-units/{tree.station.id}/android-location-reporting"
    for value in (0, 1, "yes"):
        refused = api.put(url, json={"location_reporting": value}, headers=headers)
        assert refused.status_code in (400, 422), (value, refused.status_code)
        assert "location_reporting" in refused.get_data(as_text=True)
    session.rollback()
    session.expire_all()
    assert session.get(type(tree.station), tree.station.id).android_location_reporting is None


def test_a_stored_body_loses_only_the_inventorys_position() -> None:
    body = (
        b'{"inventory":{"model":"SM-T636B","location":{"latitude":35.6812,"longitude":139.7671}},'
        b'"results":[{"command_id":7,"status":"done","location":{"latitude":35.0,"longitude":139.0}}]}'
    )
    kept = json.loads(without_inventory_location(body))
    assert kept["inventory"] == {"model": "SM-T636B", "location": NOT_KEPT}
    # A LOCATE answer is what the hotline asked for: it stays.
    assert kept["results"][0]["location"] == {"latitude": 35.0, "longitude": 139.0}
    for untouched in (b"not json", b'{"results":[]}', b'{"inventory":{"model":"x"}}', b'["location"]'):
        assert without_inventory_location(untouched) == untouched
