"""RESET_PASSWORD with a new password and flags (protocol section 10): checked against the unit's
password policy before it is queued, sealed at rest, handed to the agent only in the sync answer,
and visible nowhere else (API, audit log, stored parameters)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from commands.queue import expire_overdue
from mdm.ground import clock
from mdm.ground.db import transaction
from mdm.ground.models import AuditEvent, Command, DeviceMessage
from profiles.assignment import assign_profile
from profiles.service import create_profile
from tests.enrollment.conftest import ADMIN
from tests.profiles.samples import spec_with
from tests.web.helpers import bearer
from tests.web.helpers import make_token as api_token

NEW_PASSWORD = "Kaji2026fd"


def _passcode_policy(app: Any, unit: Any) -> None:
    hikeshi = app.extensions["hikeshi"]
    with transaction(hikeshi.session_factory) as s:
        spec = spec_with(
            {"kind": "passcode", "settings": {"min_length": 8, "require_alphanumeric": True}},
            identifier="jp.fire.test.passcode",
        )
        profile = create_profile(s, ADMIN, spec)
        assign_profile(s, hikeshi.settings, profile, s.get(type(unit), unit.id), actor=ADMIN)


def test_a_new_password_is_checked_sealed_and_reaches_only_the_agent(
    enroll_app: Any, agent_factory: Any, android_token: Any, session: Any, tree: Any, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    _passcode_policy(enroll_app, tree.ambulance)
    agent = agent_factory(serial_number="R52TPASS001")
    agent.enroll(android_token())
    assert agent.policy["passwordPolicies"][0]["passwordQuality"] == "ALPHANUMERIC"
    hikeshi = enroll_app.extensions["hikeshi"]
    with hikeshi.session_factory() as s:
        headers = bearer(api_token(s, "admin"))
    api = enroll_app.test_client()
    url = f"/api/v1/devices/{agent.device_id}/commands"

    # What the policy refuses is refused before anything is queued, naming the field.
    for weak in ("", "kaji", "12345678", "x" * 17):
        refused = api.post(
            url, json={"request_type": "ResetPassword", "params": {"password": weak}}, headers=headers
        )
        assert refused.status_code == 400, weak
        assert set(refused.get_json()["error"]["fields"]["params"]) == {"password"}
    bad_flag = api.post(
        url,
        json={"request_type": "ResetPassword", "params": {"password": NEW_PASSWORD, "flags": ["FORMAT_C"]}},
        headers=headers,
    )
    assert bad_flag.status_code == 400 and set(bad_flag.get_json()["error"]["fields"]["params"]) == {"flags"}
    session.rollback()
    session.expire_all()
    assert session.scalars(select(Command).where(Command.request_type == "ResetPassword")).all() == []

    queued = api.post(
        url,
        json={
            "request_type": "ResetPassword",
            "params": {"password": NEW_PASSWORD, "flags": ["REQUIRE_ENTRY", "LOCK_NOW"]},
        },
        headers=headers,
    )
    assert queued.status_code == 201, queued.get_json()
    # Never visible after queueing: not in the answer, the command, the list, the stored row.
    assert NEW_PASSWORD not in queued.get_data(as_text=True)
    uuid = queued.get_json()["uuid"]
    assert NEW_PASSWORD not in api.get(f"/api/v1/commands/{uuid}", headers=headers).get_data(as_text=True)
    assert NEW_PASSWORD not in api.get("/api/v1/commands", headers=headers).get_data(as_text=True)
    session.rollback()
    session.expire_all()
    row = session.scalars(select(Command).where(Command.uuid == uuid)).one()
    assert row.params == {"flags": ["REQUIRE_ENTRY", "LOCK_NOW"]}
    assert row.sealed_secret is not None and NEW_PASSWORD.encode() not in row.sealed_secret

    # Delivered to the agent with its flags; resetPasswordWithToken, then lockNow().
    [command] = agent.sync()["commands"]
    assert command["type"] == "RESET_PASSWORD"
    assert command["params"] == {"password": NEW_PASSWORD, "flags": ["REQUIRE_ENTRY", "LOCK_NOW"]}
    agent.sync()  # the acknowledgement
    assert agent.tablet.password == NEW_PASSWORD and agent.tablet.locked
    session.rollback()
    session.expire_all()
    row = session.scalars(select(Command).where(Command.uuid == uuid)).one()
    # Answered: the server keeps no copy at all any more.
    assert row.status == "acknowledged" and row.sealed_secret is None
    for event in session.scalars(select(AuditEvent)).all():
        assert NEW_PASSWORD not in str(event.details), event.action
    # No log line of the server (its HTTP threads included) holds it.
    assert NEW_PASSWORD not in caplog.text
    # The agent's own sync bodies (kept as evidence) never carry it back.
    for message in session.scalars(select(DeviceMessage)).all():
        assert NEW_PASSWORD.encode() not in (message.raw or b"")


def test_clearing_is_allowed_only_where_the_unit_wants_no_password_and_apple_cannot_get_it(
    enroll_app: Any, agent_factory: Any, android_token: Any, tree: Any
) -> None:
    agent = agent_factory(serial_number="R52TPASS002")
    agent.enroll(android_token(tree.pump))  # no passcode profile
    hikeshi = enroll_app.extensions["hikeshi"]
    with hikeshi.session_factory() as s:
        headers = bearer(api_token(s, "admin"))
    api = enroll_app.test_client()
    url = f"/api/v1/devices/{agent.device_id}/commands"
    cleared = api.post(url, json={"request_type": "ResetPassword", "params": {}}, headers=headers)
    assert cleared.status_code == 201
    [command] = agent.sync()["commands"]
    assert command["params"] == {"flags": []}
    agent.sync()
    assert agent.tablet.password_cleared and agent.tablet.password is None


def test_a_password_never_delivered_is_not_kept(
    enroll_app: Any, agent_factory: Any, android_token: Any, session: Any, tree: Any
) -> None:
    """A cancelled or expired RESET_PASSWORD can never reach the agent, so its sealed password
    goes with it (the server keeps no copy of a password nobody will receive)."""
    _passcode_policy(enroll_app, tree.ambulance)
    agent = agent_factory(serial_number="R52TPASS002")
    agent.enroll(android_token())
    hikeshi = enroll_app.extensions["hikeshi"]
    with hikeshi.session_factory() as s:
        headers = bearer(api_token(s, "admin"))
    api = enroll_app.test_client()
    url = f"/api/v1/devices/{agent.device_id}/commands"
    body = {"request_type": "ResetPassword", "params": {"password": NEW_PASSWORD}}
    cancelled = api.post(url, json=body, headers=headers).get_json()["uuid"]
    assert api.post(f"/api/v1/commands/{cancelled}/cancel", headers=headers).status_code == 200
    expired = api.post(url, json=body, headers=headers).get_json()["uuid"]
    with transaction(hikeshi.session_factory) as s:
        row = s.scalars(select(Command).where(Command.uuid == expired)).one()
        row.expires_at = clock.now() - timedelta(minutes=1)
    with transaction(hikeshi.session_factory) as s:
        assert expire_overdue(s, agent.device_id) == 1
    session.rollback()
    session.expire_all()
    rows = {
        row.uuid: row
        for row in session.scalars(select(Command).where(Command.uuid.in_([cancelled, expired]))).all()
    }
    assert rows[cancelled].status == "cancelled" and rows[cancelled].sealed_secret is None
    assert rows[expired].status == "expired" and rows[expired].sealed_secret is None
    assert agent.sync()["commands"] == []
