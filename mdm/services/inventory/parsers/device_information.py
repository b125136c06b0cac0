"""DeviceInformation → the device row, its facts and history (OS upgrade, low battery)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.models import Command, Device, DeviceFacts
from mdm.services.inventory.events import inventory_updated, supervision_reported
from mdm.services.inventory.facts import facts_for
from mdm.services.inventory.history import ChangeKind, record_change
from mdm.services.inventory.parsers.common import acknowledged
from mdm.services.inventory.values import boolean, integer, json_safe, number, text, version_key

LOW_BATTERY = 0.20

# QueryResponses key → (Device attribute, length limit): identity the rest of Hikeshi reads.
_DEVICE_COLUMNS = (
    ("DeviceName", "device_name", 255),
    ("BuildVersion", "build_version", 32),
    ("ModelName", "model_name", 128),
    ("Model", "model", 64),
    ("ProductName", "product_name", 64),
    ("SerialNumber", "serial_number", 64),
    ("IMEI", "imei", 32),
    ("MEID", "meid", 32),
)
# Keys whose changes are history worth keeping; the rest change on their own all day (free
# space, battery, carrier) or have a history kind of their own (OSVersion, IsSupervised).
_NOT_HISTORY = frozenset(
    {
        "AvailableDeviceCapacity",
        "BatteryLevel",
        "OSVersion",
        "IsSupervised",
        "CurrentCarrierNetwork",
        "CurrentMCC",
        "CurrentMNC",
        "IsRoaming",
        "LastCloudBackupDate",
        "IsNetworkTethered",
        "ServiceSubscriptions",
        "DeviceName",
    }
)
_FACT_TEXT = (
    ("IMEI", "imei", 32),
    ("MEID", "meid", 32),
    ("ICCID", "iccid", 32),
    ("WiFiMAC", "wifi_mac", 32),
    ("BluetoothMAC", "bluetooth_mac", 32),
    ("TimeZone", "time_zone", 64),
    ("SupplementalBuildVersion", "supplemental_build_version", 32),
)
_FACT_BOOL = (
    ("IsActivationLockEnabled", "is_activation_lock_enabled"),
    ("IsDeviceLocatorServiceEnabled", "is_find_my_enabled"),
    ("IsCloudBackupEnabled", "is_cloud_backup_enabled"),
    ("IsMDMLostModeEnabled", "is_lost_mode_enabled"),
    ("IsRoaming", "is_roaming"),
)


def parse_device_information(session: Session, command: Command, report: dict[str, Any]) -> None:
    if not acknowledged(command, report):
        return
    answers = report.get("QueryResponses")
    if not isinstance(answers, dict):
        return
    newly_supervised = apply_device_information(session, command.device, answers)
    inventory_updated(session, command.device, "DeviceInformation")
    if newly_supervised:
        supervision_reported(session, command.device)


def apply_device_information(session: Session, device: Device, answers: dict[str, Any]) -> bool:
    """Apply one answer; True when it says, for the first time, that the device is supervised."""
    facts = facts_for(session, device.id)
    newly_supervised = False
    for key, attr, limit in _DEVICE_COLUMNS:
        value = text(answers.get(key), limit)
        if value is not None:
            setattr(device, attr, value)
    _apply_os_version(session, device, text(answers.get("OSVersion"), 32))
    supervised = boolean(answers.get("IsSupervised"))
    if supervised is not None:
        if facts.is_supervised is not None and supervised != facts.is_supervised:
            record_change(
                session, device.id, ChangeKind.SUPERVISION_CHANGED, "", facts.is_supervised, supervised
            )
        newly_supervised = supervised and device.is_supervised is not True
        device.is_supervised = supervised
        facts.is_supervised = supervised
    for key, attr, limit in _FACT_TEXT:
        if key in answers:
            setattr(facts, attr, text(answers.get(key), limit))
    for key, attr in _FACT_BOOL:
        if key in answers:
            setattr(facts, attr, boolean(answers.get(key)))
    if "CellularTechnology" in answers:
        facts.cellular_technology = integer(answers.get("CellularTechnology"))
    if "DeviceCapacity" in answers:
        facts.device_capacity_gb = number(answers.get("DeviceCapacity"))
    if "AvailableDeviceCapacity" in answers:
        facts.available_capacity_gb = number(answers.get("AvailableDeviceCapacity"))
    if "BatteryLevel" in answers:
        _apply_battery(session, device, facts.battery_level, number(answers.get("BatteryLevel")))
        facts.battery_level = number(answers.get("BatteryLevel"))
    _merge_raw(session, device, facts, json_safe(answers))
    facts.device_information_at = clock.now()
    return newly_supervised


def _merge_raw(session: Session, device: Device, facts: DeviceFacts, reported: dict[str, Any]) -> None:
    """Merge the answer into the stored copy key by key (a query for a few keys keeps the rest),
    note when each key was reported, and keep each change of a lasting value as history."""
    now = clock.now().isoformat()
    merged = dict(facts.raw_device_information or {})
    reported_at = dict(facts.device_information_reported_at or {})
    for key, value in reported.items():
        if key in merged and merged[key] != value and key not in _NOT_HISTORY:
            record_change(
                session,
                device.id,
                ChangeKind.DEVICE_INFORMATION_CHANGED,
                key,
                _short(merged[key]),
                _short(value),
            )
        merged[key] = value
        reported_at[key] = now
    # New objects, so the JSON columns are seen as changed.
    facts.raw_device_information = merged
    facts.device_information_reported_at = reported_at


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _apply_os_version(session: Session, device: Device, new: str | None) -> None:
    if new is None or new == device.os_version:
        return
    old_key, new_key = version_key(device.os_version), version_key(new)
    if old_key is not None and new_key is not None:
        kind = ChangeKind.OS_UPGRADED if new_key > old_key else ChangeKind.OS_DOWNGRADED
        record_change(session, device.id, kind, "OSVersion", device.os_version, new)
    device.os_version = new


def _apply_battery(session: Session, device: Device, old: float | None, new: float | None) -> None:
    # Only the crossing is history; a tablet staying low is not a new event at every refresh.
    # Apple reports -1.0 when the level cannot be determined.
    if new is None or new < 0:
        return
    if new < LOW_BATTERY and (old is None or old < 0 or old >= LOW_BATTERY):
        record_change(session, device.id, ChangeKind.BATTERY_LOW, "BatteryLevel", old, f"{new:.2f}")
