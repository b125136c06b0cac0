"""Per-device MQTT broker accounts: the username is the device id, the password is derived from
the instance secret, and the broker's ACL lets each account read its own wake-up topic only.

Deriving the password (HKDF key from HIKESHI_SECRET_KEY, then HMAC over the device id) means
nothing new is stored: the server can hand a device its account at enrollment or any later sync,
and write the broker's password file for every enrolled Android device at any time. Dropping a
device from that file (it was wiped or retired) closes its account. Changing PASSWORD_VERSION
re-keys every account. See docs/mqtt-wakeup.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground.config import Settings
from mdm.ground.models import Device, EnrollmentState
from mdm.ground.push.mqtt import BrokerAddress, check_topic_prefix, wake_topic
from mdm.ground.secretbox import derive_key

PASSWORD_VERSION = 1
# Mosquitto 2's own password format ($7$: PBKDF2-SHA512), as `mosquitto_passwd` writes it.
MOSQUITTO_ITERATIONS = 101
_SALT_BYTES = 12


@dataclass(frozen=True)
class DeviceBrokerAccount:
    """What an agent needs to hear its wake-ups: where, who, and which topic to subscribe to."""

    url: str  # the broker as devices reach it
    username: str
    password: str = field(repr=False)
    topic: str

    def as_json(self) -> dict[str, str]:
        return {"url": self.url, "username": self.username, "password": self.password, "topic": self.topic}


def device_broker_password(secret_key: str, device_id: int) -> str:
    key = derive_key(secret_key, f"mqtt-device-password-v{PASSWORD_VERSION}")
    digest = hmac.new(key, str(int(device_id)).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def device_broker_account(settings: Settings, device_id: int) -> DeviceBrokerAccount | None:
    """The device's broker account, or None when no broker is configured (then agents only poll)."""
    url = settings.mqtt_device_url or settings.mqtt_url
    if not url:
        return None
    BrokerAddress.parse(url)  # refuse to hand out a URL the server itself would refuse
    return DeviceBrokerAccount(
        url=url,
        username=str(int(device_id)),
        password=device_broker_password(settings.secret_key, device_id),
        topic=wake_topic(check_topic_prefix(settings.mqtt_topic_prefix), device_id),
    )


def mosquitto_password_line(username: str, password: str, *, salt: bytes | None = None) -> str:
    """`username:$7$...` exactly as `mosquitto_passwd` would write it."""
    if ":" in username or "\n" in username:
        raise ValueError("a broker username cannot contain ':' or a line break")
    salt = salt if salt is not None else os.urandom(_SALT_BYTES)
    derived = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, MOSQUITTO_ITERATIONS, 64)
    encoded = f"{base64.b64encode(salt).decode()}${base64.b64encode(derived).decode()}"
    return f"{username}:$7${MOSQUITTO_ITERATIONS}${encoded}"


def mosquitto_password_file(settings: Settings, device_ids: Iterable[int]) -> str:
    """The device accounts of a Mosquitto password file (add the server's own account to it)."""
    lines = [
        mosquitto_password_line(str(int(device_id)), device_broker_password(settings.secret_key, device_id))
        for device_id in sorted(set(device_ids))
    ]
    return "".join(line + "\n" for line in lines)


def android_accounts_password_file(session: Session, settings: Settings) -> str:
    """The password file lines of every enrolled Android device (for the site's Mosquitto)."""
    ids = session.scalars(
        select(Device.id).where(
            Device.platform == "android", Device.enrollment_state == EnrollmentState.ENROLLED
        )
    ).all()
    return mosquitto_password_file(settings, ids)
