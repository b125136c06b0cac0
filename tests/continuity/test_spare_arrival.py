"""Issue 14 item 6: a swapped-in spare counts for its unit only once it has checked in after the
swap and its ProfileList shows the unit's profiles installed at their current version.

A real spare iPad (SimulatedIPad over /mdm/checkin and /mdm/connect) sits charging at the
station, recently seen. The unit's only tablet is reported lost; the spare is swapped in through
the API. The unit must stay degraded (spare on its way, with the reason) through the swap, the
spare's first check-in and its install acknowledgement, and become ready only with the
ProfileList that shows the unit's profile (schema-shaped items). A ProfileList without it keeps
the unit degraded.
"""

from __future__ import annotations

import plistlib
from typing import Any

import pytest
from sqlalchemy import select

from commands.incidents import open_incident
from mdm.ground.audit import Actor
from mdm.ground.db import transaction
from mdm.ground.models import Device, ReadinessEvent
from mdm.services import orgunits
from mdm.services.continuity import mark_spare
from profiles.assignment import assign_profile
from profiles.service import create_profile_from_template
from tests.profiles.test_install_refresh_no_flap import ProfileHoldingIPad, _unsigned_content
from tests.support.apple_device import SimulatedIPad
from tests.support.factories import make_device
from tests.web.helpers import bearer, make_token

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")
IDENTIFIER = "jp.example.fd.ambulance-a3"


@pytest.fixture
def factory(app):
    return app.extensions["hikeshi"].session_factory


@pytest.fixture
def scene(app, factory, device_ca):
    """救急3隊 (1 tablet needed) lost its tablet; a spare iPad waits at 中央署, seen just now."""
    conf = app.extensions["hikeshi"].settings
    cert, key = device_ca.issue_identity("spare-ipad")
    spare = ProfileHoldingIPad(SimulatedIPad(cert, key, device_name="予備機 1"))
    client = app.test_client()
    assert spare.ipad.checkin(client, spare.ipad.authenticate_body()).status_code == 200
    assert spare.ipad.checkin(client, spare.ipad.token_update_body()).status_code == 200
    spare.drain(client)
    with transaction(factory) as s:
        hq = orgunits.create_unit(s, {"kind": "hq", "name_ja": "消防本部", "code": "HQ"}, actor=ADMIN)
        station = orgunits.create_unit(
            s, {"kind": "station", "name_ja": "中央署", "code": "CEN", "parent_id": hq.id}, actor=ADMIN
        )
        unit = orgunits.create_unit(
            s,
            {
                "kind": "unit",
                "unit_type": "ambulance",
                "name_ja": "救急3隊",
                "code": "A3",
                "parent_id": station.id,
            },
            actor=ADMIN,
        )
        profile = create_profile_from_template(s, ADMIN, "field-standard", identifier=IDENTIFIER)
        assign_profile(s, conf, profile, unit, actor=ADMIN)  # the unit's own profile, not the station's
        spare_device = s.scalars(select(Device).where(Device.udid == spare.ipad.udid)).one()
        orgunits.assign_device(s, spare_device, station, actor=ADMIN)
        mark_spare(s, spare_device, actor=ADMIN, note="中央署 予備棚")
        lost = make_device(s)
        orgunits.assign_device(s, lost, unit, actor=ADMIN)
        open_incident(s, lost, {"caller_name": "救急3隊 隊長"}, actor=ADMIN)
        token = make_token(s, "admin")
        ids = {"unit": unit.id, "spare": spare_device.id}
    assert spare.drain(client) == []  # at the station it has nothing of the unit's
    assert IDENTIFIER not in spare.installed
    return spare, ids, bearer(token)


def _unit(client, headers, unit_id: int) -> dict[str, Any]:
    body = client.get("/api/v1/readiness", headers=headers).get_json()
    [unit] = [u for u in body["units"] if u["unit_id"] == unit_id]
    return unit


def _spare_reasons(unit: dict[str, Any], spare_id: int) -> list[str]:
    [entry] = [m for m in unit["missing"] if m["device_id"] == spare_id]
    assert entry["incoming_spare"] is True
    return [r["code"] for r in entry["reasons"]]


def _last_event(factory, unit_id: int) -> ReadinessEvent:
    with factory() as s:
        return s.scalars(
            select(ReadinessEvent)
            .where(ReadinessEvent.org_unit_id == unit_id)
            .order_by(ReadinessEvent.id.desc())
        ).first()


def test_the_unit_is_ready_only_when_the_spare_checked_in_holding_its_profiles(app, factory, scene):
    spare, ids, headers = scene
    client = app.test_client()
    assert _unit(client, headers, ids["unit"])["state"] == "degraded"  # lost tablet, a spare at the station

    swapped = client.post(
        "/api/v1/readiness/spare-swap",
        json={"spare_device_id": ids["spare"], "unit_id": ids["unit"]},
        headers=headers,
    )
    assert swapped.status_code == 200, swapped.get_json()
    # Seen a minute ago in the cabinet is not working for the unit: degraded, on its way.
    unit = swapped.get_json()["unit"]
    assert (unit["state"], unit["working"], unit["incoming_spares"]) == ("degraded", 0, 1)
    assert _spare_reasons(unit, ids["spare"]) == ["spare_not_checked_in"]
    [reason] = next(m for m in unit["missing"] if m["device_id"] == ids["spare"])["reasons"]
    assert reason["ja"] == "予備機が配置後まだ接続していない"
    assert _last_event(factory, ids["unit"]).state == "degraded"

    # It checks in and installs the unit's profile: acknowledged, not yet verified.
    response = spare.ipad.connect(client, spare.ipad.idle_body())
    message = plistlib.loads(response.data)
    assert message["Command"]["RequestType"] == "InstallProfile"
    # Its first check-in after the swap is noticed at once, though it was seen a minute ago.
    assert _spare_reasons(_unit(client, headers, ids["unit"]), ids["spare"]) == ["spare_profiles_pending"]
    installed = plistlib.loads(_unsigned_content(message["Command"]["Payload"]))
    spare.installed[installed["PayloadIdentifier"]] = installed
    response = spare.ipad.connect(client, spare.ipad.result_body(message["CommandUUID"]))
    unit = _unit(client, headers, ids["unit"])
    assert unit["state"] == "degraded"
    assert _spare_reasons(unit, ids["spare"]) == ["spare_profiles_pending"]
    [reason] = next(m for m in unit["missing"] if m["device_id"] == ids["spare"])["reasons"]
    assert reason["en"] == "spare does not hold the unit's profiles yet (1 not verified)"

    # The ProfileList queued with the swap comes next; it shows the profile: ready.
    message = plistlib.loads(response.data)
    assert message["Command"]["RequestType"] == "ProfileList"
    spare.drain(
        client,
        spare.ipad.connect(
            client, spare.ipad.result_body(message["CommandUUID"], ProfileList=spare.profile_list())
        ),
    )
    unit = _unit(client, headers, ids["unit"])
    assert (unit["state"], unit["working"], unit["incoming_spares"]) == ("ready", 1, 0)
    event = _last_event(factory, ids["unit"])
    assert (event.previous_state, event.state, event.cause_code) == ("degraded", "ready", "spare_working")
    assert "予備機 予備機 1 が接続し隊のプロファイルを確認、稼働開始" in event.cause_ja


def test_a_spare_whose_profile_list_lacks_the_units_profile_stays_on_its_way(app, factory, scene):
    spare, ids, headers = scene
    client = app.test_client()
    swapped = client.post(
        "/api/v1/readiness/spare-swap",
        json={"spare_device_id": ids["spare"], "unit_id": ids["unit"]},
        headers=headers,
    )
    assert swapped.status_code == 200
    # The device acknowledges the install but does not keep it (a user removed it at once).
    response = spare.ipad.connect(client, spare.ipad.idle_body())
    message = plistlib.loads(response.data)
    assert message["Command"]["RequestType"] == "InstallProfile"
    response = spare.ipad.connect(client, spare.ipad.result_body(message["CommandUUID"]))
    message = plistlib.loads(response.data)
    assert message["Command"]["RequestType"] == "ProfileList"
    spare.ipad.connect(
        client, spare.ipad.result_body(message["CommandUUID"], ProfileList=spare.profile_list())
    )
    unit = _unit(client, headers, ids["unit"])
    assert (unit["state"], unit["working"]) == ("degraded", 0)
    # Its own profile-missing finding says the same from the compliance side.
    assert _spare_reasons(unit, ids["spare"]) == ["spare_profiles_pending", "noncompliant"]
