"""The MQTT wake-up end to end with the reference agent: the server hands the agent its broker
account (enroll and sync answers), the agent subscribes to its own topic on a real Mosquitto, the
hotline locks the tablet, the wake-up arrives on MQTT (never the command), the agent syncs, gets
the lock and acknowledges it. Without a broker configured, no account is handed over and nothing
connects to one."""

from __future__ import annotations

import json
import secrets
import socket
import threading
from dataclasses import replace
from typing import Any

import pytest

import commands.incidents as hotline
from mdm.ground.audit import Actor
from mdm.ground.config import Settings
from mdm.ground.db import transaction
from mdm.ground.models import Command, CommandStatus, Device, Incident, IncidentStatus
from tests.push.mqtt_support import require_local_broker

OPERATOR = Actor("operator-tanaka", "operator", "192.0.2.10")
REPORT = {"caller_name": "山田 太郎", "caller_unit": "救急3隊", "lost_place": "中央区役所前", "kind": "lost"}


@pytest.fixture
def prefix() -> str:
    """A topic prefix of this test's own: runs sharing the local broker never see each other."""
    return f"hikeshi-test-{secrets.token_hex(4)}/devices"


@pytest.fixture
def local_broker() -> tuple[str, int]:
    return require_local_broker()  # skips (fails under CI) when nothing listens on 127.0.0.1:1883


@pytest.fixture
def enroll_settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The enrollment app's settings; with the local broker when the test asks for it."""
    if "local_broker" not in request.fixturenames:
        return replace(settings, push_enabled=False)
    host, port = request.getfixturevalue("local_broker")
    # push_enabled: the dispatcher publishes wake-ups (there is no APNs certificate: no iPad is pushed).
    return replace(
        settings,
        push_enabled=True,
        mqtt_url=f"mqtt://{host}:{port}",
        mqtt_topic_prefix=request.getfixturevalue("prefix"),
    )


def _open_incident(factory: Any, device_id: int) -> int:
    with transaction(factory) as s:
        return hotline.open_incident(s, s.get(Device, device_id), REPORT, actor=OPERATOR).id


def test_lock_now_wakes_the_agent_over_mqtt_and_it_acknowledges(
    enroll_app: Any, live_server: Any, agent_factory: Any, android_token: Any, local_broker: Any, prefix: str
) -> None:
    factory = enroll_app.extensions["hikeshi"].session_factory
    agent = agent_factory()
    enrolled = agent.enroll(android_token())
    device_id = agent.device_id
    host, port = local_broker
    # The enroll answer hands over the device's own broker account (section 5 of the protocol).
    account = enrolled["wake"]["mqtt"]
    assert account == {
        "url": f"mqtt://{host}:{port}",
        "username": str(device_id),
        "password": account["password"],
        "topic": f"{prefix}/{device_id}/wake",
    }
    assert len(account["password"]) >= 32
    # ... and every sync answer carries it again (the newest wins).
    assert agent.sync()["wake"]["mqtt"] == account

    listener = agent.listen_mqtt()
    try:
        assert listener.connections == 1
        agent.sync()  # once after every (re)connection, as the specification asks

        incident_id = _open_incident(factory, device_id)
        with transaction(factory) as s:
            outcome = hotline.lock_now(
                s, s.get(Incident, incident_id), actor=OPERATOR, message={"phone_number": "03-3212-2111"}
            )
            command_uuid = outcome.command.uuid

        # The agent only syncs when woken: the lock comes through the wake-up, not through a poll.
        message = listener.next_wakeup(timeout=20)
        assert message is not None, "no wake-up arrived on MQTT"
        assert message.topic == account["topic"] and message.qos == 1
        body = json.loads(message.payload)
        assert body["wake"] is True and set(body) == {"v", "wake", "at"}  # never the command
        answer = agent.sync()
        [command] = answer["commands"]
        assert command["id"] == command_uuid and command["type"] == "START_LOST_MODE"
        assert agent.tablet.lost_mode and agent.tablet.locked
        assert agent.tablet.lost_phone == "03-3212-2111"
        agent.sync()  # reports the acknowledgement
    finally:
        listener.close()

    with factory() as s:
        command = s.query(Command).filter_by(uuid=command_uuid).one()
        assert command.status == CommandStatus.ACKNOWLEDGED
        incident = s.get(Incident, incident_id)
        assert incident.status == IncidentStatus.LOCKED and incident.locked_at is not None


def test_without_a_broker_no_account_is_handed_over_and_nothing_connects(
    enroll_app: Any, live_server: Any, agent_factory: Any, android_token: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connects: list[Any] = []
    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> Any:
        connects.append(address)
        return real_connect(sock, address)

    threads_before = set(threading.enumerate())
    monkeypatch.setattr(socket.socket, "connect", connect)
    factory = enroll_app.extensions["hikeshi"].session_factory
    agent = agent_factory()
    enrolled = agent.enroll(android_token())
    long_poll = enroll_app.extensions["hikeshi"].settings.android_long_poll_seconds
    assert enrolled["wake"] == {"long_poll_seconds": long_poll}
    assert "mqtt" not in agent.sync()["wake"] and agent.mqtt_account is None

    incident_id = _open_incident(factory, agent.device_id)
    with transaction(factory) as s:
        hotline.lock_now(s, s.get(Incident, incident_id), actor=OPERATOR)
    assert enroll_app.extensions["hikeshi"].dispatcher.wait_idle(10)
    [command] = agent.sync()["commands"]  # the next poll brings the lock all the same
    assert command["type"] == "START_LOST_MODE"
    agent.sync()

    assert enroll_app.extensions["hikeshi"].dispatcher._mqtt is None
    new_threads = {t.name for t in set(threading.enumerate()) - threads_before}
    assert not any(name.startswith("paho") for name in new_threads)
    # Only the agent's HTTP requests (and the database, when it is a server) left this process.
    ports = {address[1] for address in connects if isinstance(address, tuple)}
    assert ports <= {live_server.port, 5432}, ports
