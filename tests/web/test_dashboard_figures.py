"""Every figure on the dashboard and in the device API is read from what happened (issue 14,
item 7): each one moves when the underlying state changes. The lost-mode tile counts the devices
in lost mode as the device last confirmed it: an acknowledged EnableLostMode (not one only sent),
until a later DisableLostMode acknowledgement or DeviceInformation answer of IsMDMLostModeEnabled
(Apple's information.device.yaml) says otherwise."""

from __future__ import annotations

import plistlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from mdm.ground import clock
from mdm.ground.models import Device
from tests.conftest import MovableClock
from tests.protocol.test_apple_loop import _enroll, fresh
from tests.support.apple_schema import schema_dir_or_skip
from tests.web.helpers import bearer, login, make_token, make_user


def _tiles(console: Any) -> dict[str, int]:
    html = console.get("/console/dashboard").get_data(as_text=True)
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r'id="tile-([a-z-]+)"><span class="n">(\d+)</span>', html)
    }


def _answer_everything(client: Any, ipad: Any, *, lost_mode: bool | None = None) -> list[str]:
    """The iPad fetches and acknowledges what is waiting; DeviceInformation is answered with the
    standard keys and, when given, IsMDMLostModeEnabled."""
    answered = []
    while data := ipad.connect(client, ipad.idle_body()).data:
        command = plistlib.loads(data)
        request_type = command["Command"]["RequestType"]
        extra: dict[str, Any] = {}
        if request_type == "DeviceInformation":
            responses = ipad.device_information()
            if lost_mode is not None:
                responses["IsMDMLostModeEnabled"] = lost_mode
            extra = {"QueryResponses": responses}
        ipad.connect(client, ipad.result_body(command["CommandUUID"], **extra))
        answered.append(request_type)
    return answered


@pytest.fixture
def moving_clock() -> Iterator[MovableClock]:
    """Today's time, moved by the test (certificates of the simulated iPad are issued now)."""
    moving = MovableClock(datetime.now(UTC))
    clock.set_clock(moving)
    yield moving
    clock.set_clock(None)


def test_lost_mode_is_a_device_information_answer() -> None:
    doc = yaml.safe_load((schema_dir_or_skip().parent / "commands" / "information.device.yaml").read_text())
    [responses] = [k for k in doc["responsekeys"] if k["key"] == "QueryResponses"]
    [spec] = [k for k in responses["subkeys"] if k["key"] == "IsMDMLostModeEnabled"]
    assert spec["type"] == "<boolean>"


def test_every_dashboard_figure_moves_with_the_state(app, client, ipad, session, settings, moving_clock):
    with app.extensions["hikeshi"].session_factory() as s:
        token = bearer(make_token(s, "admin"))
        account = make_user(s, settings, "chief-dashboard", "admin")
    console = app.test_client()
    login(console, account)
    start = _tiles(console)
    assert start["enrolled"] == 0 and start["lost"] == 0 and start["pending"] == 0 and start["seen"] == 0

    _enroll(client, ipad)
    fresh(session)
    device_id = session.scalars(select(Device.id).where(Device.udid == ipad.udid)).one()
    # Enrollment queued the first inventory: the device has not fetched it yet.
    enrolled = _tiles(console)
    assert enrolled["enrolled"] == 1 and enrolled["seen"] == 1 and enrolled["pending"] >= 1
    detail = client.get(f"/api/v1/devices/{device_id}", headers=token).get_json()
    assert detail["compliance"] == "unknown" and detail["open_findings"] is None
    assert detail["pending_commands"] == enrolled["pending"]

    moving_clock.advance(minutes=1)
    assert "DeviceInformation" in _answer_everything(client, ipad, lost_mode=False)
    answered = _tiles(console)
    assert answered["pending"] == 0 and answered["lost"] == 0
    detail = client.get(f"/api/v1/devices/{device_id}", headers=token).get_json()
    assert detail["supervised"] is True and detail["pending_commands"] == 0

    # Lost mode sent: a command waits, the device is not in lost mode yet.
    moving_clock.advance(minutes=1)
    sent = client.post(
        f"/api/v1/devices/{device_id}/commands",
        headers=token,
        json={"request_type": "EnableLostMode", "params": {"Message": "紛失中の端末です"}},
    )
    assert sent.status_code == 201, sent.get_json()
    assert _tiles(console)["lost"] == 0 and _tiles(console)["pending"] == 1
    # The device acknowledges it: in lost mode.
    moving_clock.advance(minutes=1)
    assert _answer_everything(client, ipad) == ["EnableLostMode"]
    assert _tiles(console)["lost"] == 1 and _tiles(console)["pending"] == 0

    # A later DeviceInformation says it left lost mode (on the device itself): not counted.
    moving_clock.advance(minutes=1)
    client.post(
        f"/api/v1/devices/{device_id}/commands", headers=token, json={"request_type": "DeviceInformation"}
    )
    _answer_everything(client, ipad, lost_mode=False)
    assert _tiles(console)["lost"] == 0
    # ... and a later one that it is in lost mode again: counted.
    moving_clock.advance(minutes=1)
    client.post(
        f"/api/v1/devices/{device_id}/commands", headers=token, json={"request_type": "DeviceInformation"}
    )
    _answer_everything(client, ipad, lost_mode=True)
    assert _tiles(console)["lost"] == 1
    # DisableLostMode acknowledged after that report: out of lost mode.
    moving_clock.advance(minutes=1)
    client.post(
        f"/api/v1/devices/{device_id}/commands", headers=token, json={"request_type": "DisableLostMode"}
    )
    assert _tiles(console)["lost"] == 1  # only sent: still in lost mode as far as anyone knows
    moving_clock.advance(minutes=1)
    assert _answer_everything(client, ipad) == ["DisableLostMode"]
    assert _tiles(console)["lost"] == 0

    # Seen in the last hour follows the device's last contact; push errors are system warnings.
    moving_clock.advance(hours=2)
    console = app.test_client()  # the idle console session ended meanwhile
    login(console, account)
    later = _tiles(console)
    assert later["seen"] == 0 and later["enrolled"] == 1
    warnings_before = later["alerts"]
    with app.extensions["hikeshi"].session_factory() as s:
        s.get(Device, device_id).push_error = "BadDeviceToken"
        s.commit()
    assert _tiles(console)["alerts"] == warnings_before + 1


def test_a_scoped_user_counts_only_the_devices_of_their_units(app, client, ipad, session, settings, tree):
    """The lost tile respects the principal's scope like every other figure."""
    with app.extensions["hikeshi"].session_factory() as s:
        token = bearer(make_token(s, "admin"))
        north = make_user(s, settings, "north-dashboard", "auditor", org_unit_id=tree.station_b.id)
        chief = make_user(s, settings, "chief-scope", "admin")
    sent = client.post(
        f"/api/v1/devices/{tree.device_a.id}/commands",
        headers=token,
        json={"request_type": "EnableLostMode", "params": {"Message": "紛失"}},
    )
    uuid = sent.get_json()["uuid"]
    from commands.results import record_result
    from mdm.ground.audit import Actor
    from mdm.ground.db import transaction

    report = {"UDID": tree.device_a.udid, "CommandUUID": uuid, "Status": "Acknowledged"}
    with transaction(app.extensions["hikeshi"].session_factory) as s:
        record_result(
            s, s.get(Device, tree.device_a.id), report, plistlib.dumps(report), actor=Actor("d", "device")
        )
    scoped, everyone = app.test_client(), app.test_client()
    login(scoped, north)
    login(everyone, chief)
    assert _tiles(everyone)["lost"] == 1
    assert _tiles(scoped)["lost"] == 0
