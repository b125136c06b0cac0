"""The agent protocol over real HTTP with the reference agent: enrollment with a one-time token,
the policy rendered from the unit's profiles, inventory into facts and compliance, and a
certificate that can only ever speak for its own device."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import replace
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import select

from commands.queue import enqueue_command
from mdm.ground.db import transaction
from mdm.ground.models import (
    Alert,
    Command,
    CommandStatus,
    Device,
    DeviceCertificate,
    DeviceFacts,
    EnrollmentState,
    EnrollmentToken,
    EnrollmentTokenUse,
    InstalledApp,
)
from mdm.ground.push.wakeups import BOARD
from mdm.services.android_channel import wake_channels
from mdm.services.compliance.evaluation import open_findings
from profiles.assignment import assign_profile
from profiles.service import create_profile, update_profile
from tests.enrollment.conftest import ADMIN
from tests.support.android_agent import AgentError, ReferenceAgent

BLOCKED = "com.example.fungame"
APP_RULES = {
    "identifier": "jp.fire.test.android-apps",
    "name_ja": "アプリ制限",
    "name_en": "App rules",
    "description": "",
    "payloads": [
        {
            "kind": "restrictions",
            "settings": {
                "allow_camera": False,
                "app_block_list": [{"name": "Fun Game", "package_name": BLOCKED}],
            },
        }
    ],
}


def _fresh(session: Any) -> None:
    session.rollback()
    session.expire_all()


def test_enroll_binds_the_device_to_the_token_unit_and_refuses_a_reused_token(
    agent_factory: Any, android_token: Any, session: Any, tree: Any
) -> None:
    token = android_token()
    agent = agent_factory()
    answer = agent.enroll(token)
    assert answer["protocol"] == 1 and isinstance(answer["device_id"], int)
    assert agent.certificate is not None and agent.chain[0] == agent.certificate
    # The chain ends at the built-in CA, which issued the certificate for the agent's own key.
    agent.certificate.verify_directly_issued_by(agent.chain[1])
    assert agent.certificate.public_key().public_numbers() == agent.key.public_key().public_numbers()
    assert set(answer["policy"]) == {"version", "policy", "reporting", "unsupported"}
    assert answer["policy"]["reporting"] == {"location": False}  # no unit decided otherwise

    _fresh(session)
    device = session.get(Device, agent.device_id)
    assert device.platform == "android" and device.enrollment_state == EnrollmentState.ENROLLED
    assert device.org_unit_id == tree.ambulance.id and device.serial_number == agent.serial_number
    assert device.is_supervised is True
    row = session.scalars(select(DeviceCertificate).where(DeviceCertificate.device_id == device.id)).one()
    assert row.fingerprint_sha256 == agent.certificate.fingerprint(hashes.SHA256()).hex()
    [use] = session.scalars(select(EnrollmentTokenUse)).all()
    assert use.device_id == device.id and session.get(EnrollmentToken, use.token_id).use_count == 1

    second = agent_factory(serial_number="R52T1000002")
    with pytest.raises(AgentError) as err:
        second.enroll(token)
    assert err.value.status == 403 and err.value.body["error"] == "token_used_up"
    _fresh(session)
    assert session.scalars(select(Device)).all() == [device]


def _claiming_version_5(csr_pem: str) -> str:
    """The request as base64 DER claiming PKCS#10 version 5: cryptography refuses it with
    InvalidVersion, which is not a ValueError."""
    der = x509.load_pem_x509_csr(csr_pem.encode()).public_bytes(serialization.Encoding.DER)
    return base64.b64encode(der.replace(b"\x02\x01\x00", b"\x02\x01\x05", 1)).decode()


def test_enroll_refuses_unknown_and_apple_tokens_and_bad_input(
    agent_factory: Any, make_token: Any, tree: Any, live_server: Any
) -> None:
    agent = agent_factory()
    with pytest.raises(AgentError) as err:
        agent.enroll("no-such-token")
    assert (err.value.status, err.value.body["error"]) == (403, "token_unknown")
    apple = make_token(tree.ambulance).secret
    with pytest.raises(AgentError) as err:
        agent.enroll(apple)
    assert err.value.body["error"] == "token_wrong_platform"

    http = httpx.Client(base_url=live_server.url)
    url = "/android/v1/enroll"
    cases = [
        ({"csr": agent.csr_pem()}, "enrollment_token"),
        ({"enrollment_token": "x", "csr": "not a csr"}, "csr"),
        ({"enrollment_token": "x", "csr": _claiming_version_5(agent.csr_pem())}, "csr"),
        ({"enrollment_token": "x", "csr": agent.csr_pem(), "device_owner": "yes"}, "device_owner"),
        (
            {"enrollment_token": "x", "csr": agent.csr_pem(), "hardware": {"serial_number": 5}},
            "hardware.serial_number",
        ),
        ([1, 2], "body"),
    ]
    for body, field in cases:
        response = http.post(url, json=body)
        assert response.status_code == 400, (field, response.text)
        assert response.json()["field"] == field
    assert (
        http.post(url, content=b"{", headers={"Content-Type": "application/json"}).json()["field"] == "body"
    )
    assert http.post(url, content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    too_big = b'{"x":"' + b"a" * (1024 * 1024) + b'"}'
    response = http.post(url, content=too_big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error"] == "body_too_large"
    http.close()


def test_policy_from_the_unit_profiles_inventory_and_unauthorized_package_alert(
    enroll_app: Any, agent_factory: Any, android_token: Any, session: Any, tree: Any
) -> None:
    hikeshi = enroll_app.extensions["hikeshi"]
    with transaction(hikeshi.session_factory) as s:
        profile = create_profile(s, ADMIN, APP_RULES)
        assign_profile(
            s, hikeshi.settings, profile, s.get(type(tree.ambulance), tree.ambulance.id), actor=ADMIN
        )

    agent = agent_factory()
    agent.enroll(android_token())
    # The policy is the Android rendering of the unit's profile.
    assert agent.policy is not None and agent.policy.get("cameraAccess") == "CAMERA_ACCESS_DISABLED"
    first_version = agent.policy_version

    answer = agent.sync()  # first sync: full inventory, no game yet
    assert "policy" not in answer and answer["policy_version"] == first_version
    assert agent.policies_received == 1
    _fresh(session)
    facts = session.get(DeviceFacts, agent.device_id)
    device = session.get(Device, agent.device_id)
    assert facts.android_security_patch == "2026-10-01" and facts.android_device_owner is True
    assert device.os_version == "14" and device.model_name == "samsung SM-X306B"
    assert facts.battery_level == pytest.approx(0.83) and facts.device_capacity_gb == pytest.approx(128)
    assert facts.passcode_present is True
    apps = session.scalars(select(InstalledApp).where(InstalledApp.device_id == device.id)).all()
    # System packages stay in the raw inventory, out of the app list compliance looks at.
    assert [a.identifier for a in apps] == ["jp.hikeshi.agent"]
    assert "com.android.settings" in facts.raw_device_information["system_packages"]
    assert open_findings(session, device.id) == []

    agent.packages.append(
        {"package_name": BLOCKED, "label": "Fun Game", "version_name": "2.1", "version_code": 21}
    )
    agent.sync(inventory=True)
    _fresh(session)
    [finding] = open_findings(session, agent.device_id)
    assert (finding.rule, finding.subject) == ("unauthorized_app", BLOCKED)
    [alert] = session.scalars(select(Alert).where(Alert.kind == "compliance.unauthorized_app")).all()
    assert BLOCKED in alert.title and alert.device_id == agent.device_id

    # A changed profile is a new policy version, sent once.
    with transaction(hikeshi.session_factory) as s:
        changed = dict(APP_RULES)
        changed["payloads"] = [{"kind": "restrictions", "settings": {"allow_camera": True}}]
        update_profile(s, ADMIN, s.get(type(profile), profile.id), changed)
    answer = agent.sync()
    assert "policy" in answer and agent.policy_version != first_version
    assert agent.policy.get("cameraAccess") == "CAMERA_ACCESS_USER_CHOICE"
    assert "policy" not in agent.sync()


def test_a_certificate_speaks_only_for_its_own_device(
    enroll_app: Any, agent_factory: Any, android_token: Any, session: Any, live_server: Any
) -> None:
    first = agent_factory(serial_number="R52T0000001")
    first.enroll(android_token())
    second = agent_factory(serial_number="R52T0000002")
    second.enroll(android_token())
    hikeshi = enroll_app.extensions["hikeshi"]
    with transaction(hikeshi.session_factory) as s:
        queued = enqueue_command(s, s.get(Device, first.device_id), "RestartDevice", {}, actor=ADMIN)
        first_command = queued.uuid

    # The second agent presents the first one's certificate but signs with its own key: refused.
    impostor = ReferenceAgent(live_server.url, serial_number="R52T0000002")
    impostor.key, impostor.certificate = second.key, first.certificate
    with pytest.raises(AgentError) as err:
        impostor.sync()
    assert err.value.status == 401 and err.value.body["error"] == "unauthenticated"
    response = impostor.request("GET", "/android/v1/wait?timeout=0")
    assert response.status_code == 401
    impostor.http.close()

    # Its own sync never carries the first device's command, and it cannot report on it.
    second.pending_results = [{"command_id": first_command, "status": "acknowledged"}]
    answer = second.sync()
    assert answer["device_id"] == second.device_id and answer["commands"] == []
    _fresh(session)
    command = session.scalars(select(Command).where(Command.uuid == first_command)).one()
    assert command.status == CommandStatus.QUEUED
    # The first agent gets it.
    assert [c["type"] for c in first.sync()["commands"]] == ["REBOOT"]


def test_tampered_replayed_and_unsigned_requests_are_refused(
    agent_factory: Any, android_token: Any, live_server: Any, enroll_settings: Any
) -> None:
    agent = agent_factory()
    agent.enroll(android_token())
    path = "/android/v1/sync"
    body = json.dumps({"results": []}).encode()
    headers = {**agent.signed_headers("POST", path, body), "Content-Type": "application/json"}
    assert agent.http.post(path, content=body, headers=headers).status_code == 200
    # Same headers, another body.
    assert agent.http.post(path, content=b'{"results":[] }', headers=headers).status_code == 401
    # Signed for another path.
    wait_headers = agent.signed_headers("GET", "/android/v1/wait?timeout=0", b"")
    assert agent.http.post(path, content=b"", headers=wait_headers).status_code in (401, 415)
    # Too old.
    old = dict(headers)
    old["Hikeshi-Timestamp"] = str(
        int(old["Hikeshi-Timestamp"]) - enroll_settings.android_signature_max_skew_seconds - 60
    )
    assert agent.http.post(path, content=body, headers=old).status_code == 401
    # No credentials at all, garbage signature.
    assert (
        agent.http.post(path, content=body, headers={"Content-Type": "application/json"}).status_code == 401
    )
    bad = {**headers, "Hikeshi-Signature": base64.b64encode(b"x" * 256).decode()}
    response = agent.http.post(path, content=body, headers=bad)
    assert response.status_code == 401 and response.json()["error"] == "unauthenticated"
    # A valid signature over a body with a wrong type: 400 naming the field.
    wrong = json.dumps({"results": [{"command_id": "X", "status": "done"}]}).encode()
    signed = {**agent.signed_headers("POST", path, wrong), "Content-Type": "application/json"}
    response = agent.http.post(path, content=wrong, headers=signed)
    assert response.status_code == 400 and response.json()["field"] == "results.0.status"


def test_a_second_enrollment_claiming_an_enrolled_serial_is_refused_and_changes_nothing(
    agent_factory: Any, android_token: Any, session: Any
) -> None:
    """Never matched by a claimed serial (tests/security/test_android_enroll_takeover.py has more)."""
    old = agent_factory(serial_number="R52T0000009")
    old.enroll(android_token())
    new = agent_factory(serial_number="R52T0000009")
    with pytest.raises(AgentError) as err:
        new.enroll(android_token())
    assert err.value.status == 409 and err.value.body["error"] == "serial_conflict"
    assert err.value.body["field"] == "hardware.serial_number"
    assert old.sync()["device_id"] == old.device_id
    _fresh(session)
    rows = session.scalars(
        select(DeviceCertificate).where(DeviceCertificate.device_id == old.device_id)
    ).all()
    assert [r.revoked_at for r in rows] == [None]


def test_long_polls_are_capped_per_device_and_all_wake_on_a_command(
    enroll_app: Any, agent_factory: Any, android_token: Any
) -> None:
    agent = agent_factory()
    agent.enroll(android_token())
    answers: list[bool] = []
    waiters = [threading.Thread(target=lambda: answers.append(agent.wait(timeout=30))) for _ in range(2)]
    for waiter in waiters:
        waiter.start()
    for _ in range(100):  # until both polls are parked
        if BOARD.waiting(agent.device_id) == 2:
            break
        threading.Event().wait(0.05)
    third = agent.request("GET", "/android/v1/wait?timeout=0")
    assert third is not None and third.status_code == 503
    assert third.json()["error"] == "busy" and int(third.headers["Retry-After"]) > 0
    with transaction(enroll_app.extensions["hikeshi"].session_factory) as s:
        enqueue_command(s, s.get(Device, agent.device_id), "DeviceLock", {}, actor=ADMIN)
    for waiter in waiters:
        waiter.join(40)
    assert answers == [True, True]


def test_wake_channels_carry_the_device_broker_account(enroll_settings: Any) -> None:
    assert wake_channels(enroll_settings, 42) == {"long_poll_seconds": 55}
    with_broker = replace(enroll_settings, mqtt_url="mqtt://127.0.0.1:1883")
    mqtt = wake_channels(with_broker, 42)["mqtt"]
    assert mqtt["topic"] == "hikeshi/devices/42/wake" and mqtt["username"] == "42"
    assert mqtt["url"] == "mqtt://127.0.0.1:1883" and mqtt["password"]
    assert wake_channels(with_broker, 43)["mqtt"]["password"] != mqtt["password"]


def test_absurdly_nested_json_is_a_400_not_a_500(live_server: Any) -> None:
    body = b"[" * 200_000 + b"]" * 200_000
    with httpx.Client(base_url=live_server.url) as http:
        response = http.post("/android/v1/enroll", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["field"] == "body"
