"""MQTT wake-ups for Android agents: a queued command publishes a wake-up (never the command) at
QoS 1 to the device's own topic, which a subscribed client receives from a real Mosquitto; the
documented per-device ACL keeps each device to its own topic; an unreachable broker is recorded
and loses nothing; and without a broker configured nothing ever connects."""

from __future__ import annotations

import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from commands.queue import enqueue_command, pending_commands
from mdm import create_app
from mdm.ground.audit import Actor
from mdm.ground.config import Settings
from mdm.ground.db import transaction
from mdm.ground.health import service_health
from mdm.ground.models import Device, EnrollmentState
from mdm.ground.push.broker_accounts import (
    android_accounts_password_file,
    device_broker_account,
    device_broker_password,
    mosquitto_password_file,
    mosquitto_password_line,
)
from mdm.ground.push.dispatcher import PushDispatcher
from mdm.ground.push.mqtt import BrokerAddress, MqttWaker, check_topic_prefix, wake_payload, wake_topic
from tests.push.mqtt_support import PrivateMosquitto, Subscriber, free_port, require_local_broker
from tests.push.test_wakeups import make_android_device
from tests.support.factories import make_device

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")


def _until(condition, timeout: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _health(session: Session) -> Any:
    session.rollback()
    session.expire_all()
    return service_health(session, "mqtt")


def _queue(factory: sessionmaker[Session], device_id: int, request_type: str) -> None:
    with transaction(factory) as s:
        enqueue_command(s, s.get(Device, device_id), request_type, {}, actor=ADMIN)


@pytest.fixture
def prefix() -> str:
    """A topic prefix of this test's own, so runs sharing the broker never see each other."""
    return f"hikeshi-test-{secrets.token_hex(4)}/devices"


# -- against the local broker (Mosquitto on 127.0.0.1:1883) -------------------------------------------


@pytest.fixture
def local_broker() -> tuple[str, int]:
    return require_local_broker()


@pytest.fixture
def mqtt_app(settings: Settings, local_broker: tuple[str, int], prefix: str) -> Iterator[Any]:
    host, port = local_broker
    application = create_app(replace(settings, mqtt_url=f"mqtt://{host}:{port}", mqtt_topic_prefix=prefix))
    yield application
    application.extensions["hikeshi"].dispatcher.close()
    application.extensions["hikeshi"].engine.dispose()


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_queued_command_publishes_a_wake_up_to_the_device_topic(
    mqtt_app, local_broker, prefix, session, android_request_type, caplog
):
    factory = mqtt_app.extensions["hikeshi"].session_factory
    subscriber = Subscriber(local_broker[1])
    try:
        assert subscriber.subscribe(f"{prefix}/+/wake")[0].value == 1  # granted QoS 1
        with transaction(factory) as s:
            tablet = make_android_device(s)
            ipad = make_device(s)
            tablet_id, ipad_id = tablet.id, ipad.id
            enqueue_command(s, tablet, android_request_type, {"Message": "紛失端末です"}, actor=ADMIN)
            enqueue_command(s, ipad, "DeviceLock", {}, actor=ADMIN)

        message = subscriber.next_message()
        assert message.topic == f"{prefix}/{tablet_id}/wake"
        assert message.qos == 1 and not message.retain
        body = json.loads(message.payload)
        # A wake-up only: no command, no parameters, nothing about the device.
        assert set(body) == {"v", "wake", "at"} and body["v"] == 1 and body["wake"] is True
        assert body["at"].endswith("Z")
        assert "紛失" not in message.payload.decode()
        assert mqtt_app.extensions["hikeshi"].dispatcher.wait_idle(10)

        # A second command: its wake-up comes next on the same connection, so had the iPad (APNs,
        # no MQTT) been published to in the first batch, it would have arrived before this one.
        _queue(factory, tablet_id, android_request_type)
        assert subscriber.next_message().topic == f"{prefix}/{tablet_id}/wake"
        assert subscriber.messages.empty()
        assert ipad_id != tablet_id
    finally:
        subscriber.close()

    assert _until(lambda: (row := _health(session)) is not None and row.healthy)
    assert _errors(caplog) == []
    # The command itself waits in the database for the agent to fetch it.
    session.rollback()
    assert len(pending_commands(session, session.get(Device, tablet_id))) == 2


def test_a_wake_up_published_before_the_connection_is_up_is_delivered(
    writer_factory, settings, local_broker, prefix, android_request_type, caplog
):
    # No start(): the first wake-up opens the connection and waits in the client for it.
    host, port = local_broker
    dispatcher = PushDispatcher(
        writer_factory, replace(settings, mqtt_url=f"mqtt://{host}:{port}", mqtt_topic_prefix=prefix)
    )
    dispatcher.install()
    subscriber = Subscriber(port)
    try:
        subscriber.subscribe(f"{prefix}/+/wake")
        with transaction(writer_factory) as s:
            device_id = make_android_device(s).id
        _queue(writer_factory, device_id, android_request_type)
        assert subscriber.next_message().topic == f"{prefix}/{device_id}/wake"
        assert dispatcher.wait_idle(10)
        assert _errors(caplog) == []
    finally:
        subscriber.close()
        dispatcher.close()


# -- the documented per-device broker accounts and ACL (docs/mqtt-wakeup.md) ----------------------------

ACL = """\
# The Hikeshi server publishes wake-ups and reads nothing.
user hikeshi-server
topic write {prefix}/+/wake

# Every device account (username = device id) reads its own wake-up topic, and nothing else.
pattern read {prefix}/%u/wake
"""


def test_each_device_account_reads_only_its_own_topic(
    tmp_path: Path, writer_factory, settings, prefix, android_request_type
):
    with transaction(writer_factory) as s:
        first, second = make_android_device(s).id, make_android_device(s).id
    # The server's own account is made by hand; the device accounts come from Hikeshi.
    server_conf = replace(
        settings,
        mqtt_topic_prefix=prefix,
        mqtt_username="hikeshi-server",
        mqtt_password="server-secret",
    )
    device_lines = mosquitto_password_file(server_conf, [first, second])
    broker = PrivateMosquitto(
        tmp_path, {"hikeshi-server": "server-secret"}, ACL.format(prefix=prefix), device_lines
    ).start()
    server_conf = replace(server_conf, mqtt_url=f"mqtt://127.0.0.1:{broker.port}")
    dispatcher = PushDispatcher(writer_factory, server_conf)
    dispatcher.install()
    dispatcher.start()
    account_1 = device_broker_account(server_conf, first)
    account_2 = device_broker_account(server_conf, second)
    assert account_1 is not None and account_2 is not None
    assert (account_1.username, account_1.topic) == (str(first), wake_topic(prefix, first))
    devices: list[Subscriber] = []
    try:
        one = Subscriber(broker.port, username=account_1.username, password=account_1.password)
        two = Subscriber(broker.port, username=account_2.username, password=account_2.password)
        devices += [one, two]
        assert one.connect_result.value == 0 and two.connect_result.value == 0
        assert one.subscribe(account_1.topic)[0].value == 1
        # Mosquitto accepts a subscription to another device's topic, or to all of them, but the
        # read ACL never delivers anything from there.
        one.subscribe(account_2.topic)
        one.subscribe(f"{prefix}/#")
        assert two.subscribe(account_2.topic)[0].value == 1
        # Nor may a device publish a fake wake-up to another: the broker drops it.
        one.client.publish(account_2.topic, b"fake", qos=1).wait_for_publish(10)

        _queue(writer_factory, second, android_request_type)
        message = two.next_message()
        assert message.topic == account_2.topic and json.loads(message.payload)["wake"] is True
        # The server's next wake-up (same connection, so delivered after the first) is the first
        # thing the other device receives: the wake-up of `second` never reached it.
        _queue(writer_factory, first, android_request_type)
        received = one.next_message()
        assert received.topic == account_1.topic and json.loads(received.payload)["wake"] is True
        assert one.messages.empty() and two.messages.empty()

        # One device's password does not open another's account.
        intruder = Subscriber(broker.port, username=account_2.username, password=account_1.password)
        devices.append(intruder)
        assert intruder.connect_result.is_failure  # "Not authorized"
    finally:
        for device in devices:
            device.close()
        dispatcher.close()
        broker.stop()


def test_device_accounts_are_stable_distinct_and_absent_without_a_broker(settings: Settings):
    configured = replace(settings, mqtt_url="mqtt://10.0.0.5", mqtt_device_url="mqtts://broker.fd.example")
    account = device_broker_account(configured, 7)
    assert account is not None
    assert account == device_broker_account(configured, 7)
    assert account.url == "mqtts://broker.fd.example" and account.username == "7"
    assert account.topic == "hikeshi/devices/7/wake"
    assert account.password not in repr(account)
    assert account.password != device_broker_password(settings.secret_key, 8)
    assert account.password != device_broker_password("another-instance-secret", 7)
    assert device_broker_account(settings, 7) is None
    line = mosquitto_password_line("7", "pw", salt=bytes(12))
    assert line.startswith("7:$7$101$AAAAAAAAAAAAAAAA$") and line.endswith("==")
    with pytest.raises(ValueError, match="username"):
        mosquitto_password_line("a:b", "pw")


def test_the_password_file_lists_enrolled_android_devices_only(writer_factory, settings: Settings):
    with transaction(writer_factory) as s:
        enrolled = make_android_device(s)
        retired = make_android_device(s)
        retired.enrollment_state = EnrollmentState.RETIRED
        make_device(s)  # an iPad has no broker account
        enrolled_id = enrolled.id
    with writer_factory() as s:
        text = android_accounts_password_file(s, settings)
    [line] = text.splitlines()
    username, hashed = line.split(":", 1)
    assert username == str(enrolled_id) and hashed.startswith("$7$101$")


# -- no broker, or an unreachable one -------------------------------------------------------------------


def test_an_unreachable_broker_is_recorded_and_loses_no_command(
    writer_factory, settings, session, prefix, android_request_type, caplog
):
    port = free_port()  # nothing listens here
    dispatcher = PushDispatcher(
        writer_factory, replace(settings, mqtt_url=f"mqtt://127.0.0.1:{port}", mqtt_topic_prefix=prefix)
    )
    dispatcher.install()
    dispatcher.start()
    try:
        with transaction(writer_factory) as s:
            device_id = make_android_device(s).id
        for _ in range(3):
            _queue(writer_factory, device_id, android_request_type)
        assert dispatcher.wait_idle(10)
        assert _until(lambda: (row := _health(session)) is not None and not row.healthy)
        row = _health(session)
        assert row.detail == f"cannot reach the broker at mqtt://127.0.0.1:{port}"
        # Wake-ups waiting for the broker are coalesced: one per device, not one per command.
        waker = dispatcher._mqtt
        assert waker is not None and list(waker._queued) == [device_id]
        assert len(pending_commands(session, session.get(Device, device_id))) == 3
        assert _errors(caplog) == []
    finally:
        dispatcher.close()


def test_without_a_broker_configured_nothing_connects(
    monkeypatch: pytest.MonkeyPatch, settings, device_ca, android_request_type
):
    connects: list[Any] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(sock: socket.socket, address: Any) -> Any:
        connects.append(address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> Any:
        connects.append(address)
        return real_connect_ex(sock, address)

    threads_before = set(threading.enumerate())
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    application = create_app(replace(settings, device_ca_file=str(device_ca.path)))
    ext = application.extensions["hikeshi"]
    try:
        with transaction(ext.session_factory) as s:
            device = make_android_device(s)
            enqueue_command(s, device, android_request_type, {}, actor=ADMIN)
        assert ext.dispatcher.wait_idle(10)
        assert ext.dispatcher._mqtt is None
        new_threads = {t.name for t in set(threading.enumerate()) - threads_before}
        assert not any(name.startswith("paho") for name in new_threads)
        assert connects == []
        with ext.session_factory() as s:
            assert s.scalars(select(Device)).one().platform == "android"
            assert service_health(s, "mqtt") is None
    finally:
        ext.dispatcher.close()
        ext.engine.dispose()


# -- settings and message format ---------------------------------------------------------------------------


def test_broker_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("HIKESHI_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("HIKESHI_SECRET_KEY", "test-secret")
    monkeypatch.setenv("HIKESHI_MQTT_URL", "mqtts://broker.fd.example:8884")
    monkeypatch.setenv("HIKESHI_MQTT_USERNAME", "hikeshi-server")
    monkeypatch.setenv("HIKESHI_MQTT_PASSWORD", "pw")
    monkeypatch.setenv("HIKESHI_MQTT_CA_FILE", "/etc/hikeshi/broker-ca.pem")
    monkeypatch.setenv("HIKESHI_MQTT_TOPIC_PREFIX", "/fd/tablets/")
    monkeypatch.setenv("HIKESHI_MQTT_DEVICE_URL", "mqtts://mqtt.fd.example")
    conf = Settings.from_env()
    assert (conf.mqtt_url, conf.mqtt_username, conf.mqtt_password, conf.mqtt_ca_file) == (
        "mqtts://broker.fd.example:8884",
        "hikeshi-server",
        "pw",
        "/etc/hikeshi/broker-ca.pem",
    )
    assert conf.mqtt_topic_prefix == "fd/tablets" and conf.mqtt_device_url == "mqtts://mqtt.fd.example"
    for name in ("URL", "USERNAME", "PASSWORD", "CA_FILE", "TOPIC_PREFIX", "DEVICE_URL"):
        monkeypatch.delenv(f"HIKESHI_MQTT_{name}")
    default = Settings.from_env()
    assert default.mqtt_url is None and default.mqtt_topic_prefix == "hikeshi/devices"
    assert MqttWaker.from_settings(default) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker", BrokerAddress("broker", 1883, False)),
        ("mqtts://broker.fd.example", BrokerAddress("broker.fd.example", 8883, True)),
        ("mqtt://10.0.0.5:1884/", BrokerAddress("10.0.0.5", 1884, False)),
    ],
)
def test_broker_urls(url: str, expected: BrokerAddress):
    assert BrokerAddress.parse(url) == expected


@pytest.mark.parametrize(
    "url",
    ["http://broker", "mqtt://", "mqtt://user:pw@broker", "mqtt://broker:99999", "mqtt://broker/x", "broker"],
)
def test_bad_broker_urls_are_refused_at_startup(url: str, settings: Settings):
    with pytest.raises(ValueError, match=r"HIKESHI_MQTT_URL|URL"):
        MqttWaker(replace(settings, mqtt_url=url))


def test_topic_and_payload():
    from datetime import UTC, datetime

    assert wake_topic("hikeshi/devices", 42) == "hikeshi/devices/42/wake"
    assert check_topic_prefix("/a/b/") == "a/b"
    for bad in ("", "/", "a/+/b", "a/#"):
        with pytest.raises(ValueError, match="TOPIC_PREFIX"):
            check_topic_prefix(bad)
    payload = wake_payload(datetime(2026, 11, 23, 3, 0, 5, tzinfo=UTC))
    assert payload == b'{"v":1,"wake":true,"at":"2026-11-23T03:00:05Z"}'
