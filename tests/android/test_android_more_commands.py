"""The Android-only commands (protocol section 10): ClearAppData (CLEAR_APP_DATA) and
RelinquishOwnership (RELINQUISH_OWNERSHIP), queued through the API and executed by the reference
agent; neither is offered for an iPad."""

from __future__ import annotations

from typing import Any

import pytest

from commands.catalog import get_command_type
from mdm.ground.models import AuditEvent, Device, EnrollmentState
from tests.support.android_agent import AgentError
from tests.web.helpers import bearer
from tests.web.helpers import make_token as api_token


def _api(app: Any) -> tuple[Any, dict[str, str]]:
    with app.extensions["hikeshi"].session_factory() as s:
        headers = bearer(api_token(s, "admin"))
    return app.test_client(), headers


def test_android_only_commands_are_android_only() -> None:
    for name in ("ClearAppData", "RelinquishOwnership", "ResetPassword"):
        assert get_command_type(name).platforms == ("android",)


def test_clear_app_data_names_packages(enroll_app: Any, agent_factory: Any, android_token: Any) -> None:
    agent = agent_factory(serial_number="R52TCLEAR01")
    agent.enroll(android_token())
    api, headers = _api(enroll_app)
    url = f"/api/v1/devices/{agent.device_id}/commands"
    for bad in ({}, {"packages": []}, {"packages": ["not a package"]}, {"packages": ["x"] * 51}):
        refused = api.post(url, json={"request_type": "ClearAppData", "params": bad}, headers=headers)
        assert refused.status_code == 400, bad
        assert set(refused.get_json()["error"]["fields"]["params"]) == {"packages"}
    queued = api.post(
        url,
        json={"request_type": "ClearAppData", "params": {"packages": ["jp.example.dispatch"]}},
        headers=headers,
    )
    assert queued.status_code == 201
    [command] = agent.sync()["commands"]
    assert command == {
        "id": queued.get_json()["uuid"],
        "type": "CLEAR_APP_DATA",
        "params": {"packages": ["jp.example.dispatch"]},
    }
    agent.sync()
    assert agent.tablet.cleared_packages == ["jp.example.dispatch"]
    status = api.get(f"/api/v1/commands/{command['id']}", headers=headers).get_json()["status"]
    assert status == "acknowledged"


def test_relinquish_ownership_unenrolls_after_the_acknowledgement(
    enroll_app: Any, agent_factory: Any, android_token: Any, session: Any
) -> None:
    agent = agent_factory(serial_number="R52TRELQ001")
    agent.enroll(android_token())
    api, headers = _api(enroll_app)
    url = f"/api/v1/devices/{agent.device_id}/commands"
    assert (
        api.post(url, json={"request_type": "RelinquishOwnership", "params": {}}, headers=headers).status_code
        == 201
    )
    [command] = agent.sync()["commands"]
    assert command["type"] == "RELINQUISH_OWNERSHIP" and command["params"] == {}
    assert not agent.tablet.relinquished  # acknowledged first, released once the server has it
    answer = agent.sync()
    assert agent.tablet.relinquished and answer["enrollment_state"] == EnrollmentState.UNENROLLED
    session.rollback()
    session.expire_all()
    assert session.get(Device, agent.device_id).enrollment_state == EnrollmentState.UNENROLLED
    assert session.query(AuditEvent).filter(AuditEvent.action == "device.relinquished").count() == 1
    with pytest.raises(AgentError) as err:
        agent.sync()
    assert (err.value.status, err.value.body["error"]) == (403, "device_not_enrolled")
