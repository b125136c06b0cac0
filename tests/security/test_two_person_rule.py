"""Issue 13, item 5: a wipe needs two different PEOPLE on every door (API, console, CLI, scheduler).
One administrator with two API tokens of her own (an operator one and an approver one), or with
the console and her own token, is still one person; a service account is nobody; the CLI can only
request a wipe (as a named user) or break glass, and never queues EraseDevice directly."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

import commands.incidents as hotline
from commands.incidents.auto_wipe import POLICY_ACTOR
from commands.queue import TwoPersonCommand, enqueue_command
from mdm.ground.audit import Actor
from mdm.ground.models import AuditEvent, Command, Device, Incident, IncidentStatus, IncidentStep
from mdm.ground.models.incident import IncidentPolicy
from mdm.roots.cli import main as hikeshi
from tests.security.tables_h13b import snapshot
from tests.support.factories import make_device
from tests.web.helpers import bearer, csrf_of, login, make_token, make_user

REPORT = {"caller_name": "山田 太郎", "caller_unit": "救急3隊"}


@pytest.fixture
def device_id(session_factory: Any) -> int:
    with session_factory() as session:
        device = make_device(session)
        session.commit()
        return device.id


def _open(client: Any, token: str, device_id: int) -> int:
    response = client.post(
        "/api/v1/incidents", headers=bearer(token), json={"device_id": device_id, **REPORT}
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def _request(client: Any, token: str, incident_id: int) -> Any:
    return client.post(
        f"/api/v1/incidents/{incident_id}/wipe-request", headers=bearer(token), json={"reason": "盗難"}
    )


def _approve(client: Any, token: str, incident_id: int) -> Any:
    return client.post(f"/api/v1/incidents/{incident_id}/wipe-approval", headers=bearer(token))


def _refused_as_one_person(response: Any) -> None:
    assert response.status_code == 403, response.get_json()
    assert response.get_json()["error"]["code"] == "two_person_rule"


def _erase_commands(session_factory: Any) -> list[Command]:
    with session_factory() as session:
        return list(session.scalars(select(Command).where(Command.request_type == "EraseDevice")))


def test_two_tokens_of_one_admin_cannot_request_and_approve(
    client: Any, engine: Any, session_factory: Any, settings: Any, device_id: int
) -> None:
    with session_factory() as session:
        hanako = make_user(session, settings, "hanako", "admin")
        as_operator = make_token(session, "operator", owner_id=hanako.user_id, name="hanako operator")
        as_approver = make_token(session, "approver", owner_id=hanako.user_id, name="hanako approver")
    incident_id = _open(client, as_operator, device_id)
    assert _request(client, as_operator, incident_id).status_code == 200
    before = snapshot(engine)
    _refused_as_one_person(_approve(client, as_approver, incident_id))
    _refused_as_one_person(
        client.post(
            f"/api/v1/incidents/{incident_id}/wipe-rejection",
            headers=bearer(as_approver),
            json={"reason": "x"},
        )
    )
    assert snapshot(engine) == before
    assert _erase_commands(session_factory) == []

    # A second person (her own approver token) approves: the control that the rule can pass.
    with session_factory() as session:
        other = make_token(session, "approver", name="sato approver")
    assert _approve(client, other, incident_id).status_code == 200
    with session_factory() as session:
        incident = session.get(Incident, incident_id)
        assert incident.status == IncidentStatus.WIPE_APPROVED and not incident.break_glass
        assert incident.wipe_requested_by_user_id == hanako.user_id
        assert incident.wipe_approved_by_user_id not in (None, hanako.user_id)


def test_a_console_request_approved_by_the_same_persons_token_is_refused(
    app: Any, client: Any, engine: Any, session_factory: Any, settings: Any, device_id: int
) -> None:
    with session_factory() as session:
        hanako = make_user(session, settings, "hanako", "admin")
        her_token = make_token(session, "approver", owner_id=hanako.user_id)
        opener = make_token(session, "operator")
    incident_id = _open(client, opener, device_id)
    console = app.test_client()
    login(console, hanako)
    url = f"/console/hotline/incidents/{incident_id}"
    requested = console.post(
        url + "/wipe-request", data={"reason": "盗難", "csrf_token": csrf_of(console.get(url).data)}
    )
    assert requested.status_code == 302
    with session_factory() as session:
        incident = session.get(Incident, incident_id)
        assert incident.status == IncidentStatus.WIPE_REQUESTED
        assert incident.wipe_requested_by_user_id == hanako.user_id
    before = snapshot(engine)
    _refused_as_one_person(_approve(client, her_token, incident_id))
    assert snapshot(engine) == before
    assert _erase_commands(session_factory) == []


def test_a_token_request_approved_in_the_console_by_its_owner_is_refused(
    app: Any, client: Any, engine: Any, session_factory: Any, settings: Any, device_id: int
) -> None:
    with session_factory() as session:
        hanako = make_user(session, settings, "hanako", "admin")
        her_token = make_token(session, "operator", owner_id=hanako.user_id)
    incident_id = _open(client, her_token, device_id)
    assert _request(client, her_token, incident_id).status_code == 200
    before = snapshot(engine)
    console = app.test_client()
    login(console, hanako)
    url = f"/console/hotline/incidents/{incident_id}"
    refused = console.post(url + "/wipe-approve", data={"csrf_token": csrf_of(console.get(url).data)})
    assert refused.status_code == 302
    assert "申請した本人は承認できません" in console.get(url).get_data(as_text=True)
    assert snapshot(engine) == before


def test_a_service_account_can_neither_request_nor_approve_nor_be_the_second_person(
    client: Any, engine: Any, session_factory: Any, device_id: int
) -> None:
    with session_factory() as session:
        robot = make_token(session, "admin", service_account="ops-robot")
        person = make_token(session, "operator")
    incident_id = _open(client, person, device_id)
    before = snapshot(engine)
    _refused_as_one_person(_request(client, robot, incident_id))
    _refused_as_one_person(
        client.post(
            f"/api/v1/incidents/{incident_id}/break-glass", headers=bearer(robot), json={"reason": "x"}
        )
    )
    assert snapshot(engine) == before
    assert _request(client, person, incident_id).status_code == 200
    before = snapshot(engine)
    refused = _approve(client, robot, incident_id)
    _refused_as_one_person(refused)
    assert "service account" in refused.get_json()["error"]["message"]
    assert snapshot(engine) == before


def test_a_request_by_nobody_known_cannot_be_approved(
    client: Any, engine: Any, session_factory: Any, device_id: int
) -> None:
    """A request recorded before people were (or whose requester was removed): approve → 409."""
    with session_factory() as session:
        approver = make_token(session, "approver")
        device = session.get(Device, device_id)
        incident = hotline.open_incident(session, device, REPORT, actor=Actor("user:old", "operator"))
        incident.status = IncidentStatus.WIPE_REQUESTED
        incident.wipe_requested_by = "token:abc:legacy"
        session.commit()
        incident_id = incident.id
    before = snapshot(engine)
    response = _approve(client, approver, incident_id)
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "two_person_rule"
    assert snapshot(engine) == before


def test_the_queue_refuses_erase_from_every_door_but_the_incident_flow(session: Any) -> None:
    device = make_device(session)
    with pytest.raises(TwoPersonCommand):
        enqueue_command(session, device, "EraseDevice", {}, actor=Actor("user:x", "admin", user_id=1))
    assert session.scalars(select(Command)).all() == []


def test_the_scheduler_wipes_only_as_the_flagged_policy_actor(session: Any) -> None:
    device = make_device(session)
    incident = hotline.open_incident(session, device, REPORT, actor=Actor("user:op", "operator"))
    with pytest.raises(hotline.PersonRequired):
        hotline.policy_wipe(session, incident, actor=Actor("user:x", "admin", user_id=5), reason="r")
    command = hotline.policy_wipe(session, incident, actor=POLICY_ACTOR, reason="auto-wipe policy")
    assert command.request_type == "EraseDevice" and incident.break_glass
    assert incident.wipe_approved_by_user_id is None
    [step] = [s for s in incident.steps if s.action == "wipe_auto"]
    assert step.flagged
    assert session.scalars(select(IncidentPolicy)).all() == []


# -- the CLI -----------------------------------------------------------------------------------------


def _cli(*args: str) -> Any:
    return CliRunner().invoke(hikeshi, list(args), catch_exceptions=False)


@pytest.fixture
def cli_env(settings: Any, monkeypatch: Any) -> Any:
    monkeypatch.setenv("HIKESHI_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("HIKESHI_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HIKESHI_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("HIKESHI_PUSH_ENABLED", "0")
    return settings


def test_cli_refuses_erase_device_and_points_to_the_incident_flow(
    cli_env: Any, engine: Any, session_factory: Any
) -> None:
    with session_factory() as session:
        device = make_device(session)
        session.commit()
        udid = device.udid
    before = snapshot(engine)
    result = CliRunner().invoke(hikeshi, ["command", "send", udid, "EraseDevice"])
    assert result.exit_code == 1
    assert "hikeshi incident request-wipe" in result.output and "--break-glass --reason" in result.output
    assert snapshot(engine) == before
    assert _erase_commands(session_factory) == []


def test_cli_requests_as_a_named_person_and_that_person_cannot_approve(
    cli_env: Any, client: Any, engine: Any, session_factory: Any, settings: Any, device_id: int
) -> None:
    with session_factory() as session:
        hanako = make_user(session, settings, "hanako", "admin")
        make_user(session, settings, "gone", "operator")
        from web.auth.users import disable_user, find_user_by_name

        disable_user(session, find_user_by_name(session, "gone"), actor=Actor("test", "admin"))
        make_user(session, settings, "auditor1", "auditor")
        session.commit()
        her_token = make_token(session, "approver", owner_id=hanako.user_id)
        opener = make_token(session, "operator")
    incident_id = _open(client, opener, device_id)
    before = snapshot(engine)
    for who in ("nobody", "gone", "auditor1"):
        refused = CliRunner().invoke(hikeshi, ["incident", "request-wipe", str(incident_id), "--as", who])
        assert refused.exit_code == 2 and "--as" in refused.output, refused.output
    assert snapshot(engine) == before

    done = _cli("incident", "request-wipe", str(incident_id), "--as", "hanako", "--reason", "盗難")
    assert "a different person must approve" in done.output
    with session_factory() as session:
        incident = session.get(Incident, incident_id)
        assert incident.wipe_requested_by_user_id == hanako.user_id
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "incident.wipe_requested")
        ).one()
        assert event.actor.startswith("user:hanako (cli:")
    before = snapshot(engine)
    _refused_as_one_person(_approve(client, her_token, incident_id))
    assert snapshot(engine) == before


def test_cli_break_glass_is_for_administrators_with_a_reason_and_flagged(
    cli_env: Any, client: Any, engine: Any, session_factory: Any, settings: Any, device_id: int
) -> None:
    with session_factory() as session:
        make_user(session, settings, "hanako", "admin")
        make_user(session, settings, "taro", "operator")
        opener = make_token(session, "operator")
    incident_id = _open(client, opener, device_id)
    before = snapshot(engine)
    as_operator = CliRunner().invoke(
        hikeshi,
        ["incident", "request-wipe", str(incident_id), "--as", "taro", "--break-glass", "--reason", "x"],
    )
    assert as_operator.exit_code == 2 and "wipe.break_glass" in as_operator.output
    no_reason = CliRunner().invoke(
        hikeshi, ["incident", "request-wipe", str(incident_id), "--as", "hanako", "--break-glass"]
    )
    assert no_reason.exit_code == 1 and "reason" in no_reason.output
    assert snapshot(engine) == before

    done = _cli(
        "incident",
        "request-wipe",
        str(incident_id),
        "--as",
        "hanako",
        "--break-glass",
        "--reason",
        "情報流出の危険",
    )
    assert done.output.startswith("BREAK GLASS")
    with session_factory() as session:
        incident = session.get(Incident, incident_id)
        assert incident.break_glass and incident.break_glass_reason == "情報流出の危険"
        assert incident.status == IncidentStatus.WIPE_APPROVED
        step = session.scalars(select(IncidentStep).where(IncidentStep.action == "wipe_break_glass")).one()
        assert step.flagged and step.actor.startswith("user:hanako (cli:")
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "incident.wipe_break_glass")
        ).one()
        assert event.details["flagged"] is True and event.details["reason"] == "情報流出の危険"
    assert len(_erase_commands(session_factory)) == 1
