"""What the OS update commands' answers leave behind: AvailableOSUpdates' offered updates (and
the releases the fleet has now seen offered, with when they were first seen), OSUpdateStatus'
progress, ScheduleOSUpdate's results, all on the device's DeviceOsUpdate row.

Only the keys Apple's schema gives each item are kept (with their types checked): an answer with
unexpected keys or wrong types keeps what is usable and drops the rest.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.models import Command, DeviceOsUpdate, OsRelease

_AVAILABLE_KEYS: dict[str, type | tuple[type, ...]] = {
    "ProductKey": str,
    "HumanReadableName": str,
    "ProductName": str,
    "Version": str,
    "Build": str,
    "DownloadSize": int,
    "InstallSize": int,
    "IsCritical": bool,
    "IsConfigDataUpdate": bool,
    "IsFirmwareUpdate": bool,
    "IsMajorOSUpdate": bool,
    "RestartRequired": bool,
    "AllowsInstallLater": bool,
    "IsSecurityResponse": bool,
    "DeferredUntil": datetime,
}
_STATUS_KEYS: dict[str, type | tuple[type, ...]] = {
    "ProductKey": str,
    "IsDownloaded": bool,
    "DownloadPercentComplete": (float, int),
    "Status": str,
    "MaxDeferrals": int,
    "DeferralsRemaining": int,
    "NextScheduledInstall": datetime,
}
_RESULT_KEYS: dict[str, type | tuple[type, ...]] = {"ProductKey": str, "InstallAction": str, "Status": str}


def _items(
    report: dict[str, Any], key: str, known: dict[str, type | tuple[type, ...]]
) -> list[dict[str, Any]] | None:
    raw = report.get(key)
    if not isinstance(raw, list):
        return None
    items = []
    for entry in raw[:200]:
        if not isinstance(entry, dict):
            continue
        item: dict[str, Any] = {}
        for name, kind in known.items():
            value = entry.get(name)
            if isinstance(value, bool) and kind is not bool:
                continue
            if isinstance(value, kind):
                item[name] = value.isoformat() if isinstance(value, datetime) else value
                if isinstance(value, str):
                    item[name] = value[:255]
        if item:
            items.append(item)
    return items


def updates_row(session: Session, device_id: int) -> DeviceOsUpdate:
    row = session.get(DeviceOsUpdate, device_id)
    if row is None:
        row = DeviceOsUpdate(device_id=device_id)
        session.add(row)
    return row


def record_release(session: Session, platform: str, version: str, build: str | None) -> OsRelease:
    found = session.scalars(
        select(OsRelease).where(OsRelease.platform == platform, OsRelease.version == version)
    ).first()
    if found is None:
        found = OsRelease(
            platform=platform, version=version[:32], build=(build or None), first_seen_at=clock.now()
        )
        session.add(found)
        session.flush()
    elif build and not found.build:
        found.build = build[:32]
    return found


def record_available(session: Session, command: Command, report: dict[str, Any]) -> None:
    items = _items(report, "AvailableOSUpdates", _AVAILABLE_KEYS)
    if items is None:
        return
    row = updates_row(session, command.device_id)
    row.available = items
    row.available_at = clock.now()
    for item in items:
        if isinstance(item.get("Version"), str) and not item.get("IsConfigDataUpdate"):
            record_release(session, "apple", item["Version"], item.get("Build"))


def record_status(session: Session, command: Command, report: dict[str, Any]) -> None:
    items = _items(report, "OSUpdateStatus", _STATUS_KEYS)
    if items is None:
        return
    row = updates_row(session, command.device_id)
    row.update_status = items
    row.update_status_at = clock.now()


def record_scheduled(session: Session, command: Command, report: dict[str, Any]) -> None:
    items = _items(report, "UpdateResults", _RESULT_KEYS)
    row = updates_row(session, command.device_id)
    if items is not None:
        row.update_status = items
        row.update_status_at = clock.now()
