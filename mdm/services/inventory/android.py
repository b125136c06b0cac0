"""The inventory an Android agent sends with a sync → the device row, its facts, installed apps
and history, then compliance (through inventory_updated, like every Apple result).

The Apple parsers already know how to keep facts and history (OS upgrades, low battery, apps
installed, removed, updated); the agent's inventory is translated into their keys and handed to
them, and what only Android has (security patch level, device-owner state) is written here.
The inventory as sent is kept in the facts' raw columns.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.models import Device
from mdm.services.inventory.events import inventory_updated
from mdm.services.inventory.facts import facts_for
from mdm.services.inventory.parsers.applications import apply_installed_applications
from mdm.services.inventory.parsers.device_information import apply_device_information
from mdm.services.inventory.values import json_safe

REQUEST_TYPE = "AndroidInventory"  # what compliance hooks see as the source of the update
_GB = 1_000_000_000  # Apple reports capacities in decimal gigabytes; so do we for Android


def apply_android_inventory(session: Session, device: Device, inventory: dict[str, Any]) -> None:
    """Write a validated inventory (mdm.doors.android.protocol.InventorySchema) and evaluate compliance."""
    now = clock.now()
    facts = facts_for(session, device.id)
    security = inventory.get("security") or {}
    # Read before apply_device_information, which keeps its own (Apple-keyed) copy there.
    previous = facts.raw_device_information
    apply_device_information(session, device, _device_information(inventory))
    os_info = inventory.get("os") or {}
    if os_info.get("security_patch"):
        facts.android_security_patch = os_info["security_patch"]
    if security.get("device_owner") is not None:
        facts.android_device_owner = security["device_owner"]
    if security.get("password_set") is not None:
        facts.passcode_present = security["password_set"]
    if security.get("password_sufficient") is not None:
        facts.passcode_compliant = security["password_sufficient"]
        facts.passcode_compliant_with_profiles = security["password_sufficient"]
    # Every part of the inventory may be left out (protocol section 7): a part that was not sent
    # keeps what the tablet reported before, in the raw columns as in the facts. The request
    # schema loads a left-out hardware, os or security part as {}: empty means "not sent".
    raw = dict(previous) if isinstance(previous, dict) else {}
    raw.update({k: v for k, v in inventory.items() if k != "packages" and v not in (None, {})})
    packages = inventory.get("packages")
    if packages is not None:
        raw["system_packages"] = sorted(p["package_name"] for p in packages if p.get("system"))
    facts.raw_device_information = json_safe(raw)
    if security:
        facts.raw_security_info = json_safe(security)
        facts.security_info_at = now
    if packages is not None:
        # Apps are what the tablet's users (or the policy) installed. The firmware's own packages
        # differ by maker and would all fail an allow list; they are kept in the raw inventory.
        apps = [_app(p) for p in packages if not p.get("system")]
        apply_installed_applications(session, device, apps, complete=True)
    inventory_updated(session, device, REQUEST_TYPE)


def _device_information(inventory: dict[str, Any]) -> dict[str, Any]:
    """The inventory in DeviceInformation's QueryResponses keys (only those that were sent)."""
    hardware = inventory.get("hardware") or {}
    os_info = inventory.get("os") or {}
    battery = inventory.get("battery") or {}
    storage = inventory.get("storage") or {}
    security = inventory.get("security") or {}
    manufacturer, model = hardware.get("manufacturer"), hardware.get("model")
    answers: dict[str, Any] = {
        "DeviceName": hardware.get("device_name"),
        "SerialNumber": hardware.get("serial_number"),
        "Model": model,
        "ModelName": " ".join(p for p in (manufacturer, model) if p) or None,
        "ProductName": hardware.get("product"),
        "OSVersion": os_info.get("android_version"),
        "BuildVersion": os_info.get("build_id"),
        "IMEI": hardware.get("imei"),
        "WiFiMAC": hardware.get("wifi_mac"),
        "TimeZone": inventory.get("time_zone"),
        "BatteryLevel": battery.get("level"),
        # A device owner is what supervision is on Apple: lost mode, silent wipe, restrictions.
        "IsSupervised": security.get("device_owner"),
        "IsMDMLostModeEnabled": security.get("lost_mode"),
    }
    if storage.get("total_bytes") is not None:
        answers["DeviceCapacity"] = storage["total_bytes"] / _GB
    if storage.get("available_bytes") is not None:
        answers["AvailableDeviceCapacity"] = storage["available_bytes"] / _GB
    return {key: value for key, value in answers.items() if value is not None}


def _app(package: dict[str, Any]) -> dict[str, Any]:
    code = package.get("version_code")
    return {
        "Identifier": package["package_name"],
        "Name": package.get("label"),
        "ShortVersion": package.get("version_name"),
        "Version": None if code is None else str(code),
    }
