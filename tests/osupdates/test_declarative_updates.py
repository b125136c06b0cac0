"""Declarative OS updates end to end (issue #21 item 4): a unit's update policy → the device is
told its declarations changed → it fetches tokens, declaration-items and each declaration (the
ServerTokens and DeclarationsToken the server computed, consistent across fetches) → it reports
status (real-shaped reports with unexpected keys, then partial ones) → compliance finds it behind
past its deadline and clears when the device reports the target. Everything sent is checked
against Apple's schema."""

from __future__ import annotations

import hashlib
import json
import plistlib
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from mdm.ground import clock
from mdm.ground.audit import Actor
from mdm.ground.models import AuditEvent, Command, ComplianceFinding, Device, DeviceOsUpdate
from mdm.services.compliance.evaluation import evaluate_device
from mdm.services.osupdates.declarations import SUBSCRIBED_ITEMS
from mdm.services.osupdates.enforcement import sync_fleet
from mdm.services.osupdates.policy import set_update_policy
from tests.osupdates.apple_checks import (
    LOCAL_DATE_TIME,
    checkin_problems,
    command_problems,
    declaration_problems,
)
from tests.protocol.test_apple_loop import _enroll, _skip_first_inventory, fresh

JST = ZoneInfo("Asia/Tokyo")
ADMIN = Actor("user:admin", "admin", user_id=1)


@pytest.fixture
def moving_clock():
    """Time that starts now (the test CA's certificates are valid) and moves when told."""
    from tests.conftest import MovableClock

    moving = MovableClock(datetime.now(UTC))
    clock.set_clock(moving)
    yield moving
    clock.set_clock(None)


def _ddm(ipad, client, endpoint: str, data: dict[str, Any] | None = None) -> Any:
    message: dict[str, Any] = {
        "MessageType": "DeclarativeManagement",
        "UDID": ipad.udid,
        "Endpoint": endpoint,
    }
    if data is not None:
        message["Data"] = json.dumps(data).encode("utf-8")
    assert checkin_problems(message) == []
    return ipad.checkin(client, plistlib.dumps(message))


def _next_command(ipad, client) -> dict[str, Any]:
    response = ipad.connect(client, ipad.idle_body())
    assert response.status_code == 200 and response.data
    return plistlib.loads(response.data)


def _wired(app):
    return app.extensions["hikeshi"].session_factory()


def _status_report(version: str, install_state: str) -> dict[str, Any]:
    """A first full report as an iPad sends it: nested items, keys Hikeshi never asked for."""
    return {
        "StatusItems": {
            "device": {
                "identifier": {"serial-number": "F9FXXXXX", "udid": "ignored"},
                "model": {
                    "family": "iPad",
                    "identifier": "iPad13,18",
                    "marketing-name": "iPad (10th generation)",
                },
                "operating-system": {"build-version": "21F90", "family": "iPadOS", "version": version},
            },
            "softwareupdate": {
                "install-state": install_state,
                "pending-version": {"build-version": "21G93", "os-version": "17.6.1"},
                "install-reason": {"reason": ["declarative-enforcement"]},
                "beta-enrollment": {"program": "none"},
            },
            "management": {
                "client-capabilities": {"supported-versions": ["1.0.0"]},
                "declarations": {
                    "activations": [
                        {
                            "active": True,
                            "identifier": "jp.hikeshi.osupdate.activation",
                            "valid": "valid",
                            "server-token": "x",
                        }
                    ],
                    "configurations": [
                        {
                            "active": True,
                            "identifier": "jp.hikeshi.osupdate.enforcement",
                            "valid": "valid",
                            "server-token": "y",
                        }
                    ],
                    "assets": [],
                    "management": [],
                },
            },
            "future-item": {"nested": {"deeper": 1}},
        },
        "Errors": [],
        "NotInAppleSchemaYet": True,
    }


def test_declarations_status_and_compliance(app, client, ipad, session, moving_clock):
    _enroll(client, ipad)  # iPadOS 17.5.1: the declarative channel
    _skip_first_inventory(session)
    device = session.scalars(select(Device).where(Device.udid == ipad.udid)).one()

    # 23:00 Japan time three days on: the install is scheduled that day.
    deadline = (
        (clock.now() + timedelta(days=3)).astimezone(JST).replace(hour=23, minute=0, second=0, microsecond=0)
    )
    with _wired(app) as s:
        set_update_policy(
            s,
            ADMIN,
            None,
            target="17.6.1",
            deadline=deadline,
            install_time="08:00",
            blocked_windows=[{"start": "07:30", "end": "09:00"}],
        )
        outcome = sync_fleet(s, actor=ADMIN)
        # A second run with nothing changed queues nothing more.
        assert sync_fleet(s, actor=ADMIN).queued == {}
        s.commit()
    assert outcome.queued == {"DeclarativeManagement": 1}

    # The device is told; the command is Apple's DeclarativeManagement with the tokens as Data.
    command = _next_command(ipad, client)["Command"]
    assert command["RequestType"] == "DeclarativeManagement"
    keys = {k: v for k, v in command.items() if k != "RequestType"}
    assert command_problems("DeclarativeManagement", keys) == []
    pushed = json.loads(command["Data"])["SyncTokens"]

    tokens = _ddm(ipad, client, "tokens")
    assert tokens.status_code == 200 and tokens.mimetype == "application/json"
    assert tokens.get_json()["SyncTokens"]["DeclarationsToken"] == pushed["DeclarationsToken"]
    assert tokens.get_json()["SyncTokens"]["Timestamp"].endswith("Z")

    items = _ddm(ipad, client, "declaration-items").get_json()
    assert items["DeclarationsToken"] == pushed["DeclarationsToken"]
    groups = items["Declarations"]
    assert set(groups) == {"Activations", "Configurations", "Assets", "Management"}
    fetched: list[dict[str, Any]] = []
    for group, kind in (("Activations", "activation"), ("Configurations", "configuration")):
        for item in groups[group]:
            response = _ddm(ipad, client, f"declaration/{kind}/{item['Identifier']}")
            assert response.status_code == 200
            declaration = response.get_json()
            assert declaration["ServerToken"] == item["ServerToken"]
            assert declaration_problems(declaration) == []
            fetched.append(declaration)
    # The DeclarationsToken is the hash of exactly the declarations served.
    parts = sorted(f"{d['Type']}/{d['Identifier']}/{d['ServerToken']}" for d in fetched)
    assert hashlib.sha256("\n".join(parts).encode()).hexdigest() == items["DeclarationsToken"]
    by_type = {d["Type"]: d for d in fetched}
    enforcement = by_type["com.apple.configuration.softwareupdate.enforcement.specific"]["Payload"]
    assert enforcement["TargetOSVersion"] == "17.6.1"
    assert LOCAL_DATE_TIME.match(enforcement["TargetLocalDateTime"])
    # 08:00 falls in the 07:30–09:00 shift change: moved before it, on the due day (JST).
    assert enforcement["TargetLocalDateTime"] == f"{deadline:%Y-%m-%d}T07:00:00"
    subscription = by_type["com.apple.configuration.management.status-subscriptions"]["Payload"]
    assert [i["Name"] for i in subscription["StatusItems"]] == list(SUBSCRIBED_ITEMS)
    activation = by_type["com.apple.activation.simple"]["Payload"]
    assert sorted(activation["StandardConfigurations"]) == sorted(
        d["Identifier"] for d in fetched if d["Type"].startswith("com.apple.configuration.")
    )
    # Fetching again gives the same tokens (hashes are of content, not of time).
    assert _ddm(ipad, client, "declaration-items").get_json() == items
    assert _ddm(ipad, client, "declaration/configuration/jp.example.other").status_code == 404
    assert _ddm(ipad, client, "declaration/unknown").status_code == 400
    assert _ddm(ipad, client, "no-such-endpoint").status_code == 400

    # The status channel: a full report with unexpected keys, then a partial one.
    assert _ddm(ipad, client, "status", _status_report("17.5.1", "downloading")).status_code == 200
    partial = {"StatusItems": {"softwareupdate": {"install-state": "prepared"}}}
    assert _ddm(ipad, client, "status", partial).status_code == 200
    fresh(session)
    row = session.get(DeviceOsUpdate, device.id)
    assert row.status_items["softwareupdate.install-state"] == "prepared"  # the partial report
    assert row.status_items["softwareupdate.pending-version"]["os-version"] == "17.6.1"  # kept
    assert row.status_items["device.operating-system.version"] == "17.5.1"
    assert row.status_items["future-item.nested.deeper"] == 1
    assert {(d["kind"], d["identifier"], d["valid"]) for d in row.declaration_states} == {
        ("activations", "jp.hikeshi.osupdate.activation", "valid"),
        ("configurations", "jp.hikeshi.osupdate.enforcement", "valid"),
    }
    # A report that is not JSON changes nothing and is refused naming the problem.
    bad = ipad.checkin(
        client,
        plistlib.dumps(
            {"MessageType": "DeclarativeManagement", "UDID": ipad.udid, "Endpoint": "status", "Data": b"{"}
        ),
    )
    assert bad.status_code == 400 and b"not JSON" in bad.data

    # Before the deadline: behind, but not overdue.
    with _wired(app) as s:
        found = evaluate_device(s, s.get(Device, device.id))
        assert [f for f in found if f.rule == "os_update_overdue"] == []
        s.commit()
    # Past it: the finding says why, in Japanese first.
    moving_clock.advance(days=4)
    with _wired(app) as s:
        [finding] = [f for f in evaluate_device(s, s.get(Device, device.id)) if f.rule == "os_update_overdue"]
        assert finding.details["reason"] == "behind_target" and finding.severity == "info"
        assert finding.message.startswith("OS 17.5.1 が更新期限")
        s.commit()
    # The device installs the update and says so on its status channel: the finding closes.
    update = {
        "StatusItems": {"device": {"operating-system": {"version": "17.6.1", "build-version": "21G93"}}}
    }
    assert _ddm(ipad, client, "status", update).status_code == 200
    with _wired(app) as s:
        assert s.get(Device, device.id).os_version == "17.6.1"
        assert [
            f for f in evaluate_device(s, s.get(Device, device.id)) if f.rule == "os_update_overdue"
        ] == []
        s.commit()
    fresh(session)
    closed = session.scalars(
        select(ComplianceFinding).where(ComplianceFinding.rule == "os_update_overdue")
    ).one()
    assert closed.closed_at is not None
    changed = session.scalars(select(AuditEvent).where(AuditEvent.action == "os_update.status_changed")).all()
    assert any(e.details.get("os_version") == ["17.5.1", "17.6.1"] for e in changed)
    assert session.scalars(select(AuditEvent).where(AuditEvent.action == "os_update.policy_changed")).one()


def test_an_unknown_os_version_is_never_up_to_date(app, client, ipad, session, moving_clock):
    _enroll(client, ipad)
    _skip_first_inventory(session)
    with _wired(app) as s:
        device = s.scalars(select(Device).where(Device.udid == ipad.udid)).one()
        device.os_version = None
        set_update_policy(s, ADMIN, None, target="17.6.1", deadline=clock.now() - timedelta(hours=1))
        [finding] = [f for f in evaluate_device(s, device) if f.rule == "os_update_overdue"]
        assert finding.details["reason"] == "os_version_unknown"
        s.commit()


@pytest.mark.parametrize(
    "values",
    [
        {"target": "seventeen"},
        {"install_time": "25:00"},
        {"blocked_windows": [{"start": "07:30"}]},
        {"android_mode": "sometimes"},
        {"days_after_release": -1},
    ],
)
def test_a_bad_policy_names_the_field_and_writes_nothing(session, values):
    from mdm.ground.models import OsUpdatePolicy

    with pytest.raises(ValueError, match=next(iter(values))):
        set_update_policy(session, ADMIN, None, **values)
    session.rollback()
    assert session.scalars(select(OsUpdatePolicy)).all() == []


def test_commands_are_not_queued_for_a_fleet_without_policy(app, client, ipad, session):
    _enroll(client, ipad)
    _skip_first_inventory(session)
    with _wired(app) as s:
        assert sync_fleet(s, actor=ADMIN).queued == {}
        s.commit()
    fresh(session)
    assert session.scalars(select(Command).where(Command.request_type == "DeclarativeManagement")).all() == []
