"""MQTT test helpers: is a broker listening, a subscribing test client, a private Mosquitto."""

from __future__ import annotations

import getpass
import os
import queue
import secrets
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from tests.support.tools import require_tool, skip_or_fail

LOCAL_BROKER = ("127.0.0.1", 1883)


def broker_listening(address: tuple[str, int] = LOCAL_BROKER) -> bool:
    try:
        with socket.create_connection(address, timeout=1):
            return True
    except OSError:
        return False


def require_local_broker() -> tuple[str, int]:
    if not broker_listening(LOCAL_BROKER):
        skip_or_fail(
            "no MQTT broker listens on 127.0.0.1:1883 "
            "(install and start the Debian package mosquitto; CI machines have one)"
        )
    return LOCAL_BROKER


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Subscriber:
    """A device-like paho client: connects, subscribes at QoS 1 and collects what arrives."""

    def __init__(
        self,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.granted: queue.Queue[list[Any]] = queue.Queue()
        self._connected = threading.Event()
        self.connect_result: Any = None
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-{secrets.token_hex(4)}")
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda _c, _u, _mid, codes, _p: self.granted.put(list(codes))
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise AssertionError("test subscriber could not connect")

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason_code: Any, _p: Any) -> None:
        self.connect_result = reason_code
        self._connected.set()

    def subscribe(self, topic: str) -> list[Any]:
        """Subscribe at QoS 1; returns the broker's SUBACK reason codes."""
        self.client.subscribe(topic, qos=1)
        return self.granted.get(timeout=10)

    def next_message(self, timeout: float = 15.0) -> paho.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no MQTT message within {timeout}s") from None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class PrivateMosquitto:
    """A Mosquitto of our own on a free port, with a password file and an ACL file."""

    def __init__(self, directory: Path, users: dict[str, str], acl: str, password_lines: str = "") -> None:
        self.mosquitto = require_tool("mosquitto")
        passwd_tool = require_tool("mosquitto_passwd", "mosquitto")
        self.port = free_port()
        passwd = directory / "passwd"
        passwd.touch(mode=0o600)
        for user, password in users.items():
            subprocess.run([passwd_tool, "-b", str(passwd), user, password], check=True, capture_output=True)
        if password_lines:
            with passwd.open("a") as handle:
                handle.write(password_lines)
        acl_file = directory / "acl"
        acl_file.write_text(acl)
        self.config = directory / "mosquitto.conf"
        # Started as root, Mosquitto would switch to its own user, who cannot read pytest's
        # private temporary folder; a test broker keeps the user that started it.
        run_as = f"user {getpass.getuser()}\n" if os.geteuid() == 0 else ""
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous false\n"
            f"password_file {passwd}\n"
            f"acl_file {acl_file}\n"
            "persistence false\n"
            "log_dest stderr\n" + run_as
        )
        self.log = directory / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateMosquitto:
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                [self.mosquitto, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while not broker_listening(("127.0.0.1", self.port)):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"mosquitto did not start: {self.log.read_text()}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(10)
