"""How the agent is woken besides its polls."""

from __future__ import annotations

from typing import Any

from mdm.ground.config import Settings
from mdm.ground.push.broker_accounts import device_broker_account


def wake_channels(settings: Settings, device_id: int) -> dict[str, Any]:
    """The long poll always, MQTT when a broker is set (with this device's own account)."""
    channels: dict[str, Any] = {"long_poll_seconds": settings.android_long_poll_seconds}
    account = device_broker_account(settings, device_id)
    if account is not None:
        channels["mqtt"] = account.as_json()
    return channels
