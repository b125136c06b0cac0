"""MQTT wake-up for Android agents, for sites that run their own broker (no Google service needed).

A wake-up only tells the agent to sync now; it never carries a command (the agent fetches commands
over its authenticated HTTPS channel), so a lost wake-up costs latency, never a command
(DESIGN.md invariant 1). Each device subscribes to its own topic `<prefix>/<device id>/wake`;
the broker's ACL keeps it there (docs/mqtt-wakeup.md).

One long-lived paho client per process publishes at QoS 1 from its own network thread, which
connects and reconnects with exponential backoff. Nothing here blocks the caller: while the
broker is away a wake-up waits in the client (at most one per device) and leaves on reconnection.
Without `HIKESHI_MQTT_URL` no `MqttWaker` is made and nothing ever connects.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground import clock
from mdm.ground.config import Settings
from mdm.ground.db import transaction
from mdm.ground.health import mark_health

log = logging.getLogger(__name__)

HEALTH_NAME = "mqtt"  # the ServiceHealth row, next to "apns"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
KEEPALIVE_SECONDS = 60
RECONNECT_MIN_SECONDS = 1
RECONNECT_MAX_SECONDS = 120
# A backstop: wake-ups are already coalesced to one per device while the broker is away.
MAX_QUEUED_MESSAGES = 10_000
WAKE_QOS = 1
FLUSH_SECONDS = 5.0


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """`mqtt://host[:port]` or `mqtts://host[:port]` (TLS); anything else is a configuration error."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"HIKESHI_MQTT_URL is not a valid URL: {exc}") from exc
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError("HIKESHI_MQTT_URL must look like mqtt://host:1883 or mqtts://host:8883")
        if parts.username or parts.password:
            raise ValueError("put the broker credentials in HIKESHI_MQTT_USERNAME/PASSWORD, not in the URL")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("HIKESHI_MQTT_URL takes a host and port only")
        return cls(parts.hostname, port or DEFAULT_PORTS[parts.scheme], parts.scheme == "mqtts")

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def check_topic_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    if not prefix or any(c in prefix for c in "+#\0"):
        raise ValueError("HIKESHI_MQTT_TOPIC_PREFIX must be a topic without wildcards, e.g. hikeshi/devices")
    return prefix


def wake_topic(prefix: str, device_id: int) -> str:
    """The device's own topic; its broker account may read this one topic only."""
    return f"{prefix}/{int(device_id)}/wake"


def wake_payload(at: datetime) -> bytes:
    """Version 1 of the wake-up message: no command, no device data, only when it was sent."""
    stamp = at.isoformat(timespec="seconds").replace("+00:00", "Z")
    return json.dumps({"v": 1, "wake": True, "at": stamp}, separators=(",", ":")).encode()


def _acknowledged(info: paho.MQTTMessageInfo) -> bool:
    """Whether the broker acknowledged this QoS 1 message."""
    try:
        return info.is_published()
    except (ValueError, RuntimeError):
        # paho keeps the code of the first attempt ("not connected") even after the message left
        # on reconnection and was acknowledged, and then raises here; its flag still tells.
        return bool(getattr(info, "_published", False))


class MqttWaker:
    """Publishes wake-ups to the broker; `start()` connects in the background, `close()` stops."""

    def __init__(self, settings: Settings, session_factory: sessionmaker[Session] | None = None) -> None:
        if not settings.mqtt_url:
            raise ValueError("MqttWaker needs HIKESHI_MQTT_URL")
        self.broker = BrokerAddress.parse(settings.mqtt_url)
        self.topic_prefix = check_topic_prefix(settings.mqtt_topic_prefix)
        self._settings = settings
        self._factory = session_factory
        self._lock = threading.Lock()
        self._client: paho.Client | None = None
        self._closing = False
        # Wake-ups not yet acknowledged by the broker, by device (one each: see publish_wakeups).
        self._queued: dict[int, paho.MQTTMessageInfo] = {}
        self._queued_mids: dict[int, int] = {}
        # Health changes are written in order, off the network thread, so a slow database never
        # stalls the MQTT connection.
        self._health_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hikeshi-mqtt-health")
        self._healthy: bool | None = None
        self._health_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, session_factory: sessionmaker[Session] | None = None
    ) -> MqttWaker | None:
        """A waker when a broker is configured, else None (and then nothing tries to connect)."""
        return cls(settings, session_factory) if settings.mqtt_url else None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the client thread (idempotent). Returns at once; the connection follows."""
        with self._lock:
            if self._client is not None or self._closing:
                return
            self._client = self._make_client()
            # connect_async resolves and connects in the network thread, which retries with backoff.
            self._client.connect_async(self.broker.host, self.broker.port, keepalive=KEEPALIVE_SECONDS)
            self._client.loop_start()
            log.info("MQTT wake-up: connecting to %s", self.broker)

    def close(self, flush_timeout: float = FLUSH_SECONDS) -> None:
        """Stop the client. Wake-ups not yet acknowledged get `flush_timeout` seconds to leave
        (a CLI command exits right after queueing), unless the broker is known to be down."""
        deadline = time.monotonic() + flush_timeout
        while self._unacknowledged() and self._healthy is not False and time.monotonic() < deadline:
            time.sleep(0.02)
        with self._lock:
            self._closing = True
            client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self._health_writer.shutdown(wait=True)

    def _unacknowledged(self) -> int:
        with self._lock:
            if self._client is None:
                return 0
            # An acknowledgement may come before its entry is written (it is written after
            # publish() returns, never under paho's locks), so ask each message itself.
            return sum(1 for info in self._queued.values() if not _acknowledged(info))

    @property
    def connected(self) -> bool:
        client = self._client
        return client is not None and client.is_connected()

    # -- publishing ------------------------------------------------------------------------------

    def publish_wakeups(self, device_ids: Iterable[int]) -> int:
        """Ask each device to sync now; returns how many wake-ups were handed to the client."""
        self.start()
        client = self._client
        if client is None:  # closed
            return 0
        payload = wake_payload(clock.now())
        handed = 0
        for device_id in sorted(set(device_ids)):
            with self._lock:
                earlier = self._queued.get(device_id)
                # Still waiting for the broker: it leaves after reconnecting, so after this commit
                # too, and one wake-up suffices. Connected, a fresh one is sent (the earlier one may
                # already have been read by the device before this commit).
                if earlier is not None and not _acknowledged(earlier) and not client.is_connected():
                    continue
            topic = wake_topic(self.topic_prefix, device_id)
            try:
                info = client.publish(topic, payload, qos=WAKE_QOS)
            except (ValueError, RuntimeError) as exc:
                self._publish_failed(topic, str(exc))
                continue
            if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
                self._publish_failed(topic, paho.error_string(info.rc))
                continue
            handed += 1
            with self._lock:
                previous = self._queued.pop(device_id, None)
                if previous is not None:
                    self._queued_mids.pop(previous.mid, None)
                if not _acknowledged(info):
                    self._queued[device_id] = info
                    self._queued_mids[info.mid] = device_id
        return handed

    def _publish_failed(self, topic: str, reason: str) -> None:
        log.warning("MQTT wake-up to %s failed: %s (the device syncs at its next poll)", topic, reason)
        self._set_health(False, f"publish failed: {reason}")

    # -- paho callbacks (network thread) -------------------------------------------------------------

    def _make_client(self) -> paho.Client:
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"hikeshi-srv-{secrets.token_hex(6)}",
            clean_session=True,
            protocol=paho.MQTTv311,
        )
        client.reconnect_delay_set(RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS)
        client.max_queued_messages_set(MAX_QUEUED_MESSAGES)
        if self._settings.mqtt_username:
            client.username_pw_set(self._settings.mqtt_username, self._settings.mqtt_password)
        if self.broker.tls:
            # Verifies the broker's certificate and host name; the system store unless a CA file is set.
            client.tls_set(ca_certs=self._settings.mqtt_ca_file)
        elif self._settings.mqtt_password:
            log.warning("MQTT wake-up: the broker password crosses %s in clear; use mqtts://", self.broker)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _on_connect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason_code: Any, _properties: Any
    ) -> None:
        if reason_code.is_failure:
            self._set_health(False, f"broker refused the connection: {reason_code}")
        else:
            self._set_health(True, f"connected to {self.broker}")

    def _on_connect_fail(self, _client: paho.Client, _userdata: Any) -> None:
        self._set_health(False, f"cannot reach the broker at {self.broker}")

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason_code: Any, _properties: Any
    ) -> None:
        if not self._closing:
            self._set_health(False, f"disconnected from the broker: {reason_code}")

    def _on_publish(
        self, _client: paho.Client, _userdata: Any, mid: int, reason_code: Any, _properties: Any
    ) -> None:
        with self._lock:
            device_id = self._queued_mids.pop(mid, None)
            if device_id is not None and self._queued.get(device_id) is not None:
                if self._queued[device_id].mid == mid:
                    del self._queued[device_id]
        if reason_code.is_failure:  # MQTT 5 brokers may refuse a publish (e.g. not authorised)
            self._publish_failed(f"message {mid}", str(reason_code))
        else:
            self._set_health(True, f"wake-ups accepted by {self.broker}")

    # -- health ----------------------------------------------------------------------------------

    def _set_health(self, healthy: bool, detail: str) -> None:
        """Log and record a change of state (ServiceHealth "mqtt"); repeats are not rewritten."""
        with self._health_lock:
            if healthy == self._healthy:
                return
            self._healthy = healthy
        (log.info if healthy else log.warning)("MQTT wake-up: %s", detail)
        if self._factory is None:
            return
        try:
            self._health_writer.submit(self._write_health, healthy, detail)
        except RuntimeError:  # shutting down
            pass

    def _write_health(self, healthy: bool, detail: str) -> None:
        assert self._factory is not None
        try:
            with transaction(self._factory) as session:
                mark_health(session, HEALTH_NAME, healthy, detail)
        except Exception:
            log.exception("could not record MQTT health")
