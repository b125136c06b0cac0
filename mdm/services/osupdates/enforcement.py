"""Bringing each enrolled Apple tablet to its unit's target with no per-device clicks.

- iOS 17 and later: the declarative set (declarations.py); when its DeclarationsToken changes,
  a DeclarativeManagement command tells the device to fetch it now.
- Before iOS 17 (supervised): AvailableOSUpdates once a day (what is offered, and release dates),
  then ScheduleOSUpdate for the target version: DownloadOnly before the install moment (so the
  tablet is ready), InstallASAP from the install moment on. The install moment is outside the
  unit's blocked windows (targets.install_moment), and the scheduler runs this every few minutes,
  so an install is sent in the minutes after it, never inside a window.

Android tablets take the policy's systemUpdate (android.py) with their agent policy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.context import NO_CONTEXT, CommandContext
from commands.os_update_answers import updates_row
from commands.queue import enqueue_command, pending_command_of_type
from mdm.ground import clock
from mdm.ground.audit import Actor
from mdm.ground.models import Device, DeviceFacts, DeviceOsUpdate, EnrollmentState, OsRelease
from mdm.services.osupdates.declarative import current_set, refresh_token, sync_tokens
from mdm.services.osupdates.policy import UpdatePolicyBook
from mdm.services.osupdates.targets import (
    apple_platform,
    releases,
    supports_declarative_updates,
    target_for,
)
from mdm.services.osupdates.versions import is_older

AVAILABLE_REFRESH = timedelta(days=1)
PAGE = 500


@dataclass(frozen=True)
class PageRows:
    """A page's update rows and facts, read in one query a table (a device without a row has
    none here): sync_device then reads nothing per device in the steady state."""

    updates: dict[int, DeviceOsUpdate]
    facts: dict[int, DeviceFacts]

    @classmethod
    def read(cls, session: Session, device_ids: list[int]) -> PageRows:
        updates = session.scalars(select(DeviceOsUpdate).where(DeviceOsUpdate.device_id.in_(device_ids)))
        facts = session.scalars(select(DeviceFacts).where(DeviceFacts.device_id.in_(device_ids)))
        return cls({u.device_id: u for u in updates}, {f.device_id: f for f in facts})


@dataclass
class SyncOutcome:
    queued: dict[str, int] = field(default_factory=dict)

    def add(self, request_type: str) -> None:
        self.queued[request_type] = self.queued.get(request_type, 0) + 1


def _queue(
    session: Session,
    device: Device,
    request_type: str,
    params: dict[str, Any] | None,
    *,
    actor: Actor,
    context: CommandContext,
    outcome: SyncOutcome,
) -> None:
    if pending_command_of_type(session, device, request_type) is not None:
        return
    enqueue_command(session, device, request_type, params, actor=actor, context=context)
    outcome.add(request_type)


def sync_device(
    session: Session,
    device: Device,
    *,
    actor: Actor,
    context: CommandContext = NO_CONTEXT,
    book: UpdatePolicyBook | None = None,
    fleet_releases: dict[str, OsRelease] | None = None,
    supervised: bool | None = None,
    outcome: SyncOutcome | None = None,
    rows: PageRows | None = None,
) -> SyncOutcome:
    outcome = outcome or SyncOutcome()
    if device.enrollment_state != EnrollmentState.ENROLLED or not apple_platform(device):
        return outcome
    book = book or UpdatePolicyBook(session)
    fleet_releases = releases(session) if fleet_releases is None else fleet_releases
    policy = book.for_unit(device.org_unit_id)
    updates = rows.updates.get(device.id) if rows is not None else session.get(DeviceOsUpdate, device.id)
    if supports_declarative_updates(device):
        if not policy.enforced and (updates is None or updates.declarations_token is None):
            # Declarative management starts with the first update policy that reaches the tablet;
            # a fleet without one is left exactly as it was.
            return outcome
        found = current_set(session, device, book=book, fleet_releases=fleet_releases, updates=updates)
        token, since, changed = refresh_token(session, device, found)
        if changed:
            params = {"Data": _json_text(sync_tokens(token, since))}
            _queue(
                session,
                device,
                "DeclarativeManagement",
                params,
                actor=actor,
                context=context,
                outcome=outcome,
            )
        return outcome
    if supervised is None:
        facts = rows.facts.get(device.id) if rows is not None else session.get(DeviceFacts, device.id)
        supervised = facts.is_supervised if facts is not None else None
    if supervised is not True:
        return outcome  # the update commands need supervision; the console says why
    if not policy.enforced:
        return outcome
    now = clock.now()
    if updates is None or updates.available_at is None or now - updates.available_at > AVAILABLE_REFRESH:
        _queue(session, device, "AvailableOSUpdates", None, actor=actor, context=context, outcome=outcome)
    target = target_for(policy, updates, fleet_releases)
    if target.version is None or is_older(device.os_version, target.version) is not True:
        return outcome
    offered = {item.get("Version"): item for item in (updates.available or [])} if updates else {}
    if target.version not in offered:
        return outcome  # not offered to this tablet yet: AvailableOSUpdates will tell
    action = "InstallASAP" if target.install_at is not None and now >= target.install_at else "DownloadOnly"
    row = updates_row(session, device.id)
    if row.scheduled_version == f"{target.version}:{action}":
        return outcome
    item: dict[str, Any] = {"InstallAction": action, "ProductVersion": target.version}
    key = offered[target.version].get("ProductKey")
    if isinstance(key, str):
        item["ProductKey"] = key
    before = dict(outcome.queued)
    _queue(
        session,
        device,
        "ScheduleOSUpdate",
        {"Updates": [item]},
        actor=actor,
        context=context,
        outcome=outcome,
    )
    if outcome.queued != before:
        row.scheduled_version = f"{target.version}:{action}"[:32]
        row.scheduled_at = now
        _queue(session, device, "OSUpdateStatus", None, actor=actor, context=context, outcome=outcome)
    return outcome


def _json_text(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))


def sync_fleet(
    session: Session,
    *,
    actor: Actor,
    context: CommandContext = NO_CONTEXT,
    org_unit_ids: set[int] | None = None,
) -> SyncOutcome:
    """Every enrolled Apple device (of the given units), in pages; the scheduler's os_updates job
    and a policy change run it."""
    outcome = SyncOutcome()
    book = UpdatePolicyBook(session)
    fleet_releases = releases(session)
    last_id = 0
    while True:
        query = (
            select(Device)
            .where(
                Device.id > last_id,
                Device.enrollment_state == EnrollmentState.ENROLLED,
                Device.platform == "apple",
            )
            .order_by(Device.id)
            .limit(PAGE)
        )
        if org_unit_ids is not None:
            query = query.where(Device.org_unit_id.in_(org_unit_ids))
        page = list(session.scalars(query))
        if not page:
            return outcome
        rows = PageRows.read(session, [device.id for device in page])
        for device in page:
            sync_device(
                session,
                device,
                actor=actor,
                context=context,
                book=book,
                fleet_releases=fleet_releases,
                outcome=outcome,
                rows=rows,
            )
        last_id = page[-1].id


def units_below(session: Session, org_unit_id: int | None) -> set[int] | None:
    """The unit and every unit under it (None: the fleet default reaches every unit)."""
    if org_unit_id is None:
        return None
    book = UpdatePolicyBook(session)
    children: dict[int | None, list[int]] = {}
    for unit, parent in book.parents.items():
        children.setdefault(parent, []).append(unit)
    found, stack = set(), [org_unit_id]
    while stack:
        unit = stack.pop()
        if unit not in found:
            found.add(unit)
            stack.extend(children.get(unit, []))
    return found
