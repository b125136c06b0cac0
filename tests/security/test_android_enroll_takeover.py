"""Issue 13, item 3: `POST /android/v1/enroll` never matches, revokes, moves or merges an existing
device by what the agent claims. The attacker has one Android enrollment token (any unit's, or a
leaked QR code) and knows the serial number printed on a victim tablet.

Chosen behaviour (docs/android-agent-protocol.md, "Enrollment"): a claimed serial that belongs to a
device still enrolled is refused with 409 `serial_conflict`, an admin alert and an audit event;
every successful enrollment creates a new device row. A wiped (retired) tablet enrolls again as a
new row; its old row stays retired with its history.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import select

import commands.incidents as hotline
from commands.queue import enqueue_command
from mdm.ground.audit import Actor
from mdm.ground.db import transaction
from mdm.ground.models import (
    Alert,
    AuditEvent,
    Device,
    DeviceCertificate,
    EnrollmentState,
    EnrollmentToken,
    Incident,
)
from tests.android import conftest as android_fixtures
from tests.security.tables_h13b import snapshot
from tests.support.android_agent import AgentError
from tests.support.people import person
from tests.web.helpers import bearer, csrf_of, login, make_user
from tests.web.helpers import make_token as make_api_token

# The Android tests' fixtures: enrollment app with its CA, live HTTP server, org tree, tokens, agents.
enroll_settings = android_fixtures.enroll_settings
provisioned_ca = android_fixtures.provisioned_ca
enroll_app = android_fixtures.enroll_app
live_server = android_fixtures.live_server
tree = android_fixtures.tree
make_token = android_fixtures.make_token
android_token = android_fixtures.android_token
agent_factory = android_fixtures.agent_factory

ADMIN = Actor("admin@hq", "admin")
VICTIM_SERIAL = "R52VICTIM0001"


def _factory(app: Any) -> Any:
    return app.extensions["hikeshi"].session_factory


@pytest.fixture
def victim(enroll_app: Any, agent_factory: Any, android_token: Any, tree: Any) -> Any:
    """An enrolled ambulance tablet with a command waiting for it."""
    agent = agent_factory(serial_number=VICTIM_SERIAL)
    agent.enroll(android_token(tree.ambulance))
    agent.sync()
    with transaction(_factory(enroll_app)) as s:
        agent.queued = enqueue_command(
            s, s.get(Device, agent.device_id), "RestartDevice", {}, actor=ADMIN
        ).uuid
    return agent


def _refused(agent: Any, token: str) -> dict[str, Any]:
    with pytest.raises(AgentError) as err:
        agent.enroll(token)
    assert err.value.status == 409, err.value.body
    return err.value.body


def test_another_stations_token_with_the_victims_serial_is_refused_and_nothing_moves(
    enroll_app: Any,
    engine: Any,
    victim: Any,
    agent_factory: Any,
    android_token: Any,
    tree: Any,
) -> None:
    before = snapshot(engine)
    attacker = agent_factory(serial_number=VICTIM_SERIAL)
    token = android_token(tree.pump)
    body = _refused(attacker, token)
    assert body["error"] == "serial_conflict" and body["field"] == "hardware.serial_number"
    assert "already enrolled" in body["message"]
    assert snapshot(engine) == before

    with _factory(enroll_app)() as s:
        # The token use was not spent either: the refusal rolled the enrollment back.
        used = s.scalars(select(EnrollmentToken).where(EnrollmentToken.org_unit_id == tree.pump.id)).one()
        assert used.use_count == 0
        [alert] = s.scalars(select(Alert).where(Alert.kind == "android.serial_conflict")).all()
        assert alert.device_id == victim.device_id and alert.severity == "critical"
        assert alert.details["token_unit_id"] == tree.pump.id
        [event] = s.scalars(select(AuditEvent).where(AuditEvent.action == "enrollment.serial_conflict")).all()
        assert event.details["enrolled_device_id"] == victim.device_id
        assert event.details["serial_number"] == VICTIM_SERIAL

    # The real agent keeps its certificate, unit and queue; the attacker got nothing.
    answer = victim.sync()
    assert answer["device_id"] == victim.device_id
    assert [c["id"] for c in answer["commands"]] == [victim.queued]
    assert attacker.certificate is None and attacker.device_id is None


def test_the_same_units_token_is_refused_too(
    engine: Any,
    victim: Any,
    agent_factory: Any,
    android_token: Any,
    tree: Any,
) -> None:
    before = snapshot(engine)
    body = _refused(agent_factory(serial_number=VICTIM_SERIAL), android_token(tree.ambulance, uses=5))
    assert body["error"] == "serial_conflict"
    assert snapshot(engine) == before
    assert victim.sync()["device_id"] == victim.device_id


def test_enroll_race_two_agents_claiming_one_serial_makes_one_device(
    enroll_app: Any,
    engine: Any,
    agent_factory: Any,
    android_token: Any,
    tree: Any,
) -> None:
    agents = [agent_factory(serial_number="R52RACE00001") for _ in range(2)]
    tokens = [android_token(tree.ambulance), android_token(tree.pump)]
    start = threading.Barrier(2)
    statuses: list[int] = []

    def enroll(agent: Any, token: str) -> None:
        start.wait()
        try:
            agent.enroll(token)
            statuses.append(201)
        except AgentError as exc:
            statuses.append(exc.status)

    threads = [threading.Thread(target=enroll, args=pair) for pair in zip(agents, tokens, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [201, 409]
    [winner] = [a for a in agents if a.device_id is not None]
    with _factory(enroll_app)() as s:
        devices = s.scalars(select(Device).where(Device.serial_number == "R52RACE00001")).all()
        assert [d.id for d in devices] == [winner.device_id]
        certificates = s.scalars(select(DeviceCertificate)).all()
        assert [c.device_id for c in certificates] == [winner.device_id]
    assert winner.sync()["device_id"] == winner.device_id


def test_a_wiped_tablet_enrolls_again_as_a_new_device_and_the_old_row_stays_retired(
    enroll_app: Any,
    victim: Any,
    agent_factory: Any,
    android_token: Any,
    tree: Any,
) -> None:
    factory = _factory(enroll_app)
    with transaction(factory) as s:
        incident = hotline.open_incident(
            s, s.get(Device, victim.device_id), {"caller_name": "山田", "kind": "stolen"}, actor=ADMIN
        )
        hotline.request_wipe(s, incident, actor=person(s, Actor("op-1", "operator")), reason="盗難")
        hotline.approve_wipe(s, incident, actor=person(s, Actor("duty-1", "approver")))
        incident_id = incident.id
    victim.sync()  # fetches WIPE (and the restart), acknowledges at the next sync
    victim.sync()
    assert victim.tablet.wiped

    # Re-provisioned from its unit's QR code: one scan, a new row in the same unit.
    again = agent_factory(serial_number=VICTIM_SERIAL)
    again.enroll(android_token(tree.ambulance))
    assert again.device_id != victim.device_id
    assert again.sync()["device_id"] == again.device_id
    with factory() as s:
        old, new = s.get(Device, victim.device_id), s.get(Device, again.device_id)
        assert old.enrollment_state == EnrollmentState.RETIRED
        assert new.enrollment_state == EnrollmentState.ENROLLED and new.org_unit_id == tree.ambulance.id
        # The incident and its certificate stay on the old row.
        assert s.get(Incident, incident_id).device_id == old.id
        event = s.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "device.enrolled", AuditEvent.target_id == str(new.id)
            )
        ).one()
        assert event.details["same_serial_as"] == [old.id]
    # The old copy of the agent stays locked out.
    with pytest.raises(AgentError) as err:
        victim.sync()
    assert err.value.status == 403


def test_a_tablet_reset_without_a_wipe_enrolls_after_an_admin_takes_its_record_out_of_service(
    enroll_app: Any, victim: Any, agent_factory: Any, android_token: Any, tree: Any
) -> None:
    """The admin side of a serial_conflict: a person decides, with a reason, audited."""
    factory = _factory(enroll_app)
    with factory() as s:
        hanako = make_user(s, enroll_app.extensions["hikeshi"].settings, "hanako", "admin")
        admin_token = make_api_token(s, "admin", owner_id=hanako.user_id)
        operator_token = make_api_token(s, "operator")
    reset = agent_factory(serial_number=VICTIM_SERIAL)
    _refused(reset, android_token(tree.ambulance))
    api = enroll_app.test_client()
    url = f"/api/v1/devices/{victim.device_id}/out-of-service"
    assert api.post(url, headers=bearer(operator_token), json={"reason": "初期化"}).status_code == 403
    missing = api.post(url, headers=bearer(admin_token), json={})
    assert missing.status_code == 400 and "reason" in missing.get_json()["error"]["fields"]
    done = api.post(url, headers=bearer(admin_token), json={"reason": "初期化済みの端末を再登録"})
    assert done.status_code == 200, done.get_json()
    assert api.post(url, headers=bearer(admin_token), json={"reason": "again"}).status_code == 409
    with factory() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "device.taken_out_of_service")).one()
        assert event.details["reason"] == "初期化済みの端末を再登録" and event.actor.startswith("token:")
        assert all(c.revoked_at is not None for c in s.get(Device, victim.device_id).certificates)
    # Whatever still holds the old identity is out; the reset tablet enrolls as a new record.
    with pytest.raises(AgentError) as err:
        victim.sync()
    assert err.value.status in (401, 403)
    reset.enroll(android_token(tree.ambulance))
    assert reset.device_id != victim.device_id
    assert reset.sync()["device_id"] == reset.device_id


def test_the_console_takes_a_record_out_of_service_with_a_reason(
    enroll_app: Any, victim: Any, tree: Any
) -> None:
    factory = _factory(enroll_app)
    with factory() as s:
        hanako = make_user(s, enroll_app.extensions["hikeshi"].settings, "hanako", "admin")
    console = enroll_app.test_client()
    login(console, hanako)
    page = f"/console/devices/{victim.device_id}"
    html = console.get(page).get_data(as_text=True)
    assert 'id="out-of-service-form"' in html and "記録を停止" in html
    url = page + "/out-of-service"
    assert (
        console.post(url, data={"reason": " ", "csrf_token": csrf_of(console.get(page).data)}).status_code
        == 302
    )
    with factory() as s:
        assert s.get(Device, victim.device_id).enrollment_state == EnrollmentState.ENROLLED
    done = console.post(url, data={"reason": "初期化済み", "csrf_token": csrf_of(console.get(page).data)})
    assert done.status_code == 302
    with factory() as s:
        assert s.get(Device, victim.device_id).enrollment_state == EnrollmentState.UNENROLLED
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "device.taken_out_of_service")).one()
        assert event.actor == "user:hanako" and event.details["reason"] == "初期化済み"
    assert 'id="out-of-service-form"' not in console.get(page).get_data(as_text=True)
