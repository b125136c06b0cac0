"""OS updates before iOS 17 (issue #21 item 4): AvailableOSUpdates' answer is kept (it was
discarded) and gives "latest" and the release date, ScheduleOSUpdate downloads ahead of the due
moment and installs at it, OSUpdateStatus reports progress, and the console's "who is behind and
why" follows. Every command and answer is checked against Apple's schema."""

from __future__ import annotations

import plistlib
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from mdm.ground import clock
from mdm.ground.audit import Actor
from mdm.ground.models import Device, DeviceOsUpdate, OsRelease
from mdm.services.compliance.evaluation import evaluate_device
from mdm.services.osupdates.enforcement import sync_fleet
from mdm.services.osupdates.policy import set_update_policy
from mdm.services.osupdates.report import device_state, fleet_states
from tests.osupdates.apple_checks import command_problems, response_problems
from tests.protocol.test_apple_loop import _enroll, fresh

ADMIN = Actor("user:admin", "admin", user_id=1)

OFFERED = [
    {
        "ProductKey": "iOSUpdate20H370",
        "HumanReadableName": "iPadOS 16.7.10",
        "ProductName": "iPadOS",
        "Version": "16.7.10",
        "Build": "20H370",
        "DownloadSize": 512_000_000,
        "InstallSize": 1_800_000_000,
        "IsCritical": False,
        "RestartRequired": True,
        "IsSecurityResponse": False,
        "SomethingNewerThanTheSchema": "kept out",
    },
    {
        "ProductKey": "iOSUpdate21G93",
        "HumanReadableName": "iPadOS 17.6.1",
        "ProductName": "iPadOS",
        "Version": "17.6.1",
        "Build": "21G93",
        "RestartRequired": True,
        "DownloadSize": 6_000_000_000,
        "InstallSize": 12_000_000_000,
        "IsSecurityResponse": False,
    },
]


@pytest.fixture
def moving_clock():
    from tests.conftest import MovableClock

    moving = MovableClock(datetime.now(UTC))
    clock.set_clock(moving)
    yield moving
    clock.set_clock(None)


@pytest.fixture
def old_ipad(device_ca):
    from tests.support.apple_device import SimulatedIPad

    cert, key = device_ca.issue_identity("ipad-16")
    return SimulatedIPad(cert, key, os_version="16.7.2", build_version="20H115")


def _answers(ipad) -> dict[str, dict[str, Any]]:
    return {
        "DeviceInformation": {"QueryResponses": ipad.device_information()},
        "AvailableOSUpdates": {"AvailableOSUpdates": OFFERED},
        "ScheduleOSUpdate": {
            "UpdateResults": [
                {"ProductKey": "iOSUpdate21G93", "InstallAction": "DownloadOnly", "Status": "Idle"}
            ]
        },
        "OSUpdateStatus": {
            "OSUpdateStatus": [
                {
                    "ProductKey": "iOSUpdate21G93",
                    "IsDownloaded": False,
                    "DownloadPercentComplete": 0.25,
                    "Status": "Downloading",
                }
            ]
        },
    }


def _drain(ipad, client) -> list[dict[str, Any]]:
    """Fetch and answer every waiting command as the iPad would; the commands received."""
    seen: list[dict[str, Any]] = []
    answers = _answers(ipad)
    response = ipad.connect(client, ipad.idle_body())
    while response.status_code == 200 and response.data:
        message = plistlib.loads(response.data)
        command = message["Command"]
        seen.append(command)
        extra = answers.get(command["RequestType"], {})
        response = ipad.connect(client, ipad.result_body(message["CommandUUID"], "Acknowledged", **extra))
    return seen


def _sync(app) -> dict[str, int]:
    with app.extensions["hikeshi"].session_factory() as s:
        queued = sync_fleet(s, actor=ADMIN).queued
        s.commit()
    return queued


def test_the_answers_are_what_apple_documents():
    for file_name, answer in (
        (
            "system.update.available.yaml",
            {"AvailableOSUpdates": [{k: v for k, v in o.items() if "Schema" not in k} for o in OFFERED]},
        ),
        (
            "system.update.schedule.yaml",
            {"UpdateResults": [{"ProductKey": "k", "InstallAction": "InstallASAP", "Status": "Idle"}]},
        ),
        (
            "system.update.status.yaml",
            {
                "OSUpdateStatus": [
                    {
                        "ProductKey": "k",
                        "IsDownloaded": True,
                        "DownloadPercentComplete": 1.0,
                        "Status": "Idle",
                    }
                ]
            },
        ),
    ):
        assert response_problems(file_name, answer) == []


def test_download_ahead_then_install_at_the_due_moment(app, client, old_ipad, session, moving_clock):
    _enroll(client, old_ipad)
    _drain(old_ipad, client)  # the first inventory: DeviceInformation says it is supervised
    device = session.scalars(select(Device).where(Device.udid == old_ipad.udid)).one()

    with app.extensions["hikeshi"].session_factory() as s:
        set_update_policy(s, ADMIN, None, target="latest", days_after_release=14, install_time="02:00")
        s.commit()
    # "latest" is not known before any device was asked what it is offered.
    assert _sync(app) == {"AvailableOSUpdates": 1}
    [asked] = _drain(old_ipad, client)
    assert asked["RequestType"] == "AvailableOSUpdates"
    fresh(session)
    row = session.get(DeviceOsUpdate, device.id)
    assert [o["Version"] for o in row.available] == ["16.7.10", "17.6.1"]
    assert "SomethingNewerThanTheSchema" not in row.available[0]
    assert {r.version for r in session.scalars(select(OsRelease))} == {"16.7.10", "17.6.1"}

    # The target is the newest offered; due 14 days after it was first seen: download now.
    assert _sync(app) == {"ScheduleOSUpdate": 1, "OSUpdateStatus": 1}
    sent = _drain(old_ipad, client)
    schedule = next(c for c in sent if c["RequestType"] == "ScheduleOSUpdate")
    assert command_problems("ScheduleOSUpdate", {"Updates": schedule["Updates"]}) == []
    assert schedule["Updates"] == [
        {"InstallAction": "DownloadOnly", "ProductVersion": "17.6.1", "ProductKey": "iOSUpdate21G93"}
    ]
    assert _sync(app) == {}  # nothing new to say
    with app.extensions["hikeshi"].session_factory() as s:
        state = device_state(s, s.get(Device, device.id))
        assert state is not None and state.reason == "scheduled" and state.target == "17.6.1"
        assert state.channel == "commands"
        assert s.get(DeviceOsUpdate, device.id).update_status[0]["Status"] == "Downloading"

    # Past the due moment: install now, and the device is overdue until it reports the version.
    moving_clock.advance(days=15)
    # (A day on, what the tablet is offered is asked again.)
    assert _sync(app) == {"AvailableOSUpdates": 1, "ScheduleOSUpdate": 1, "OSUpdateStatus": 1}
    sent = _drain(old_ipad, client)
    schedule = next(c for c in sent if c["RequestType"] == "ScheduleOSUpdate")
    assert schedule["Updates"][0]["InstallAction"] == "InstallASAP"
    with app.extensions["hikeshi"].session_factory() as s:
        [behind] = fleet_states(s, behind_only=True)
        assert behind.device_id == device.id and behind.reason == "overdue"
        [finding] = [f for f in evaluate_device(s, s.get(Device, device.id)) if f.rule == "os_update_overdue"]
        assert finding.details["target"] == "17.6.1"
        s.commit()


def test_an_unsupervised_old_tablet_is_behind_because_nothing_can_be_sent(app, client, device_ca, session):
    from tests.support.apple_device import SimulatedIPad

    cert, key = device_ca.issue_identity("ipad-unsupervised")
    ipad = SimulatedIPad(cert, key, os_version="16.7.2", supervised=False)
    _enroll(client, ipad)
    _drain(ipad, client)
    with app.extensions["hikeshi"].session_factory() as s:
        set_update_policy(s, ADMIN, None, target="17.6.1")
        s.commit()
    assert _sync(app) == {}
    with app.extensions["hikeshi"].session_factory() as s:
        [state] = fleet_states(s)
        assert state.reason == "not_supervised"


def test_schedule_os_update_parameters_are_checked():
    from commands.catalog import CommandParamsError, get_command_type

    kind = get_command_type("ScheduleOSUpdate")
    with pytest.raises(CommandParamsError) as err:
        kind.validate({"Updates": [{"InstallAction": "Whenever"}]})
    assert "Updates" in err.value.fields
    with pytest.raises(CommandParamsError):
        kind.validate({})
