"""A sync body is kept as evidence (device_messages), but never a secret in it: an agent that
sends a key naming one (a faulty or hostile build) has that value stored as "[redacted]", the
rest of its message as sent. The sync stores the message with an INSERT statement, not through
the ORM's validator, so the redaction is checked here over real HTTP."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from mdm.ground.models import DeviceMessage

SECRET = "wifi-psk-Kaji-2026"


def test_a_secret_in_a_sync_body_is_stored_redacted(
    session: Any, agent_factory: Any, android_token: Any
) -> None:
    agent = agent_factory(serial_number="R52TSTORE01")
    agent.enroll(android_token())
    agent.sync()
    inventory = {**agent.inventory(), "wifi": {"ssid": "HQ-FIELD", "pre_shared_key": SECRET}}
    response = agent.request("POST", "/android/v1/sync", {"results": [], "inventory": inventory})
    assert response.status_code == 200, response.text
    session.expire_all()
    stored = session.scalars(
        select(DeviceMessage)
        .where(DeviceMessage.device_id == agent.device_id)
        .order_by(DeviceMessage.id.desc())
        .limit(1)
    ).one()
    assert stored.message_type == "AndroidSync"
    assert SECRET.encode() not in stored.raw
    assert b"[redacted]" in stored.raw and b"HQ-FIELD" in stored.raw
