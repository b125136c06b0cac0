"""Sync with the device assignment service: devices in, profiles out.

The first sync fetches every device assigned to this MDM server (`/server/devices`, page by
page, until `more_to_follow` is false); later syncs ask only for what changed since the stored
cursor (`/devices/sync`: op_type added, modified or deleted). An expired cursor (Apple keeps them
for a limited time) starts a full fetch again. New devices get their unit by the rules
(mdm.services.ade.units); then each unit's ADE profile is defined with the service when it is new
or changed (`POST /profile`), and assigned to the unit's devices that do not carry it yet
(`PUT /profile/devices`). The cursor is stored after each page, so an interrupted sync resumes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.config import Settings
from mdm.ground.models import AdeDevice, AdeProfile, AdeProfileStatus, AdeServerToken, OrgUnit
from mdm.services.ade.client import DepClient, DepError
from mdm.services.ade.profiles import profile_of, service_profile
from mdm.services.ade.units import place_new_device

MAX_PAGES = 1000  # 1000 pages of 1000 devices: far past any fire HQ, short of an endless loop


class NoServerToken(RuntimeError):
    """No ABM server token has been uploaded."""


@dataclass
class SyncReport:
    full_fetch: bool = False
    added: int = 0
    modified: int = 0
    deleted: int = 0
    profiles_defined: int = 0
    assigned: int = 0
    assign_failures: dict[str, str] = field(default_factory=dict)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _text(record: dict[str, Any], key: str, limit: int) -> str | None:
    value = record.get(key)
    return value[:limit] if isinstance(value, str) and value else None


def _apply(session: Session, record: dict[str, Any], report: SyncReport, actor: Actor) -> None:
    serial = record.get("serial_number")
    if not isinstance(serial, str) or not serial:
        return
    serial = serial.strip().upper()[:64]
    row = session.scalars(select(AdeDevice).where(AdeDevice.serial_number == serial)).first()
    op = record.get("op_type") or "added"
    now = clock.now()
    if op == "deleted":
        if row is not None and row.removed_at is None:
            row.removed_at = now
            row.updated_at = now
            report.deleted += 1
        return
    created = row is None
    if row is None:
        row = AdeDevice(serial_number=serial, first_seen_at=now)
        session.add(row)
    row.model = _text(record, "model", 128) or row.model
    row.description = _text(record, "description", 255) or row.description
    row.color = _text(record, "color", 64) or row.color
    row.device_family = _text(record, "device_family", 64) or row.device_family
    row.os = _text(record, "os", 64) or row.os
    row.device_assigned_at = _parse_time(record.get("device_assigned_date")) or row.device_assigned_at
    row.profile_status = _text(record, "profile_status", 16) or row.profile_status
    row.profile_uuid = _text(record, "profile_uuid", 64) if "profile_uuid" in record else row.profile_uuid
    row.removed_at = None
    row.updated_at = now
    session.flush()
    if created:
        report.added += 1
        place_new_device(session, row, actor=actor)
    else:
        report.modified += 1


def _pull_devices(
    session: Session, token: AdeServerToken, client: DepClient, report: SyncReport, actor: Actor
) -> None:
    cursor = token.cursor
    full = cursor is None
    for _page in range(MAX_PAGES):
        try:
            answer = client.fetch_devices(cursor) if full else client.sync_devices(cursor or "")
        except DepError as exc:
            if not full and exc.code in ("EXPIRED_CURSOR", "INVALID_CURSOR", "CURSOR_REQUIRED"):
                # Apple forgets old cursors: everything again, from the start.
                full, cursor = True, None
                continue
            raise
        report.full_fetch = report.full_fetch or full
        for record in answer.get("devices") or []:
            if isinstance(record, dict):
                _apply(session, record, report, actor)
        new_cursor = answer.get("cursor")
        if isinstance(new_cursor, str) and new_cursor:
            cursor = new_cursor
            token.cursor = new_cursor[:1024]
        token.fetched_until = _parse_time(answer.get("fetched_until")) or token.fetched_until
        session.flush()
        if not answer.get("more_to_follow"):
            return
    raise DepError("the device assignment service kept answering more_to_follow")


def _push_profiles(
    session: Session, settings: Settings, client: DepClient, report: SyncReport, actor: Actor
) -> None:
    waiting: dict[int, list[AdeDevice]] = defaultdict(list)
    for device in session.scalars(
        select(AdeDevice).where(AdeDevice.removed_at.is_(None), AdeDevice.org_unit_id.is_not(None))
    ):
        assert device.org_unit_id is not None
        waiting[device.org_unit_id].append(device)
    for unit_id, unit_devices in sorted(waiting.items()):
        unit = session.get(OrgUnit, unit_id)
        row: AdeProfile | None = profile_of(session, unit_id)
        if unit is None or row is None:
            continue  # no ADE profile for this unit yet: shown as "no profile", nothing sent
        if row.dirty or not row.profile_uuid:
            answer = client.define_profile(service_profile(session, settings, unit, row))
            uuid = answer.get("profile_uuid")
            if not isinstance(uuid, str) or not uuid:
                raise DepError("POST /profile: no profile_uuid in the answer")
            row.profile_uuid, row.defined_at, row.dirty = uuid[:64], clock.now(), False
            report.profiles_defined += 1
            record_event(
                session,
                actor,
                "ade.profile_defined",
                "ade_profile",
                row.id,
                {"org_unit_id": unit_id, "profile_uuid": uuid},
            )
        todo = [
            d
            for d in unit_devices
            if d.profile_uuid != row.profile_uuid
            or d.profile_status in (None, AdeProfileStatus.EMPTY, AdeProfileStatus.REMOVED)
        ]
        for start in range(0, len(todo), 1000):
            batch = todo[start : start + 1000]
            answer = client.assign_profile(row.profile_uuid, [d.serial_number for d in batch])
            given = answer.get("devices")
            results: dict[str, Any] = given if isinstance(given, dict) else {}
            now = clock.now()
            for device in batch:
                result = str(results.get(device.serial_number, "UNKNOWN"))[:32]
                device.profile_assign_result = result
                device.profile_assigned_at = now
                if result == "SUCCESS":
                    device.profile_uuid = row.profile_uuid
                    device.profile_status = AdeProfileStatus.ASSIGNED
                    report.assigned += 1
                else:
                    report.assign_failures[device.serial_number] = result
            record_event(
                session,
                actor,
                "ade.profile_assigned",
                "ade_profile",
                row.id,
                {
                    "profile_uuid": row.profile_uuid,
                    "results": {d.serial_number: d.profile_assign_result for d in batch},
                },
            )


def sync(session: Session, settings: Settings, client: DepClient, *, actor: Actor) -> SyncReport:
    """One sync; raises NoServerToken or DepError (recorded on the token by `record_failure`)."""
    token = session.scalars(
        select(AdeServerToken)
        .where(AdeServerToken.active.is_(True))
        .order_by(AdeServerToken.id.desc())
        .limit(1)
    ).first()
    if token is None:
        raise NoServerToken("no ABM server token has been uploaded")
    report = SyncReport()
    if token.server_name is None:
        account = client.account()
        token.server_name = _text(account, "server_name", 255)
        token.server_uuid = _text(account, "server_uuid", 64)
        token.org_name = _text(account, "org_name", 255)
    _pull_devices(session, token, client, report, actor)
    _push_profiles(session, settings, client, report, actor)
    token.last_sync_at = clock.now()
    token.last_error = token.last_error_at = None
    record_event(
        session,
        actor,
        "ade.synced",
        "ade_server_token",
        token.id,
        {
            "full_fetch": report.full_fetch,
            "added": report.added,
            "modified": report.modified,
            "deleted": report.deleted,
            "profiles_defined": report.profiles_defined,
            "assigned": report.assigned,
            "assign_failures": report.assign_failures,
        },
    )
    return report


def record_failure(session: Session, error: Exception) -> None:
    """Keep a failed sync's reason on the token (for the console, doctor and status), in a
    transaction of its own after the failed one was rolled back."""
    token = session.scalars(
        select(AdeServerToken)
        .where(AdeServerToken.active.is_(True))
        .order_by(AdeServerToken.id.desc())
        .limit(1)
    ).first()
    if token is not None:
        token.last_error = str(error)[:512]
        token.last_error_at = clock.now()


def client_for(session: Session, settings: Settings, http: Any, **options: Any) -> DepClient:
    """A client with the active token's credentials (unsealed only here, for this sync)."""
    from mdm.services.ade.server_token import active_server_token, credentials_of

    token = active_server_token(session)
    if token is None:
        raise NoServerToken("no ABM server token has been uploaded")
    return DepClient(settings.ade_url, credentials_of(token, settings), http, **options)
