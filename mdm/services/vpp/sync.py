"""Bringing the service's state home: the location (client config), the assets and their
license counts (paged), and the outcome of pending asynchronous events.

Bounded: at most MAX_ASSET_PAGES pages of assets and EVENTS_PER_RUN events a run, so a huge
location or a backlog of events never holds one transaction for long.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import SYSTEM, Actor, record_event
from mdm.ground.config import Settings
from mdm.ground.models import Severity, VppAsset, VppAssignment, VppAssignmentState, VppEvent, VppToken
from mdm.ground.secretbox import derive_key
from mdm.services.alerts.service import raise_alert
from mdm.services.vpp.client import NOT_ENOUGH_LICENSES, VppClient, VppError
from mdm.services.vpp.token import active_token, bearer_of

MAX_ASSET_PAGES = 200
EVENTS_PER_RUN = 100
# An event still PENDING after this long is given up on (the service keeps events for a while
# only; a large batch completes within minutes).
EVENT_GIVE_UP = timedelta(hours=24)


class NoVppToken(RuntimeError):
    """No content token has been uploaded."""


def client_for(session: Session, settings: Settings, http: httpx.Client, **options: Any) -> VppClient:
    token = active_token(session)
    if token is None:
        raise NoVppToken("no Apps and Books content token has been uploaded")
    return VppClient(settings.vpp_url, bearer_of(token, settings), http, **options)


@dataclass
class SyncReport:
    location: str | None
    location_changed: bool
    assets: int
    pages: int
    removed: int
    events_checked: int
    events_completed: int


MDM_NAME = "Hikeshi MDM"


def mdm_id(settings: Settings) -> str:
    """This instance's stable identity towards the service: derived from the instance secret
    (never revealing it), so it survives restarts and differs between installations."""
    return str(uuid.UUID(bytes=derive_key(settings.secret_key, "vpp-mdm-id")[:16], version=4))


def claim_token(
    session: Session, client: VppClient, settings: Settings, token: VppToken, actor: Actor
) -> None:
    """Name this server in the token's client config, unless another MDM already uses it: two
    servers assigning from one location undo each other's work, so that is an alert, not a
    takeover (the operator removes the token from the other MDM, or downloads a new one)."""
    config = client.client_config()
    ours = mdm_id(settings)
    info = config.get("mdmInfo") if isinstance(config.get("mdmInfo"), dict) else None
    if info is not None and info.get("id") and info.get("id") != ours:
        other = str(info.get("name") or info.get("id"))[:100]
        raise OtherMdm(
            f"the content token is in use by another MDM ({other}): remove it there first", status=409
        )
    if info is None or info.get("id") != ours:
        client.claim(ours, MDM_NAME, version("hikeshi") if _installed() else "dev")
        record_event(session, actor, "vpp.token_claimed", "vpp_token", token.id, {"mdm_id": ours})


def _installed() -> bool:
    try:
        version("hikeshi")
    except PackageNotFoundError:
        return False
    return True


class OtherMdm(VppError):
    """The token's client config names another MDM."""


def learn_location(session: Session, client: VppClient, token: VppToken, actor: Actor) -> bool:
    """Record the token's location; True when it is another than the one it replaced."""
    config = client.client_config()
    name = str(config.get("locationName") or "")[:255] or None
    uid = str(config.get("uId") or "")[:64] or None
    changed = False
    if token.location_uid and uid and token.location_uid != uid and token.replaced_location is None:
        # A token of another location: the licenses recorded here were the old location's.
        changed = True
        token.replaced_location = token.location_name or token.location_uid
        # What was recorded here is the old location's: kept, it would answer "assigned" for a
        # license this location does not hold. Forgotten, the next request asks the service.
        forgotten = len(session.scalars(select(VppAssignment)).all())
        session.execute(delete(VppAssignment))
        session.execute(delete(VppEvent).where(VppEvent.status == "PENDING"))
        record_event(
            session,
            actor,
            "vpp.location_changed",
            "vpp_token",
            token.id,
            {"from": token.replaced_location, "to": name, "uid": uid, "assignments_forgotten": forgotten},
        )
        raise_alert(
            session,
            "vpp.location_changed",
            Severity.WARNING,
            f"The Apps and Books content token is for another location "
            f"({name}, was {token.replaced_location})",
            details={"from": token.replaced_location, "to": name},
        )
    token.location_name = name
    token.location_uid = uid
    country = config.get("countryISO2ACode")
    token.country_code = str(country)[:8] if country else token.country_code
    return changed


def sync_assets(session: Session, client: VppClient) -> tuple[int, int, int]:
    """(assets seen, pages read, assets removed): every page, then forget what Apple no longer lists."""
    seen: set[tuple[str, str]] = set()
    existing = {(a.adam_id, a.pricing_param): a for a in session.scalars(select(VppAsset))}
    page: int | None = 0
    pages = 0
    now = clock.now()
    while page is not None and pages < MAX_ASSET_PAGES:
        answer = client.assets(page)
        pages += 1
        for item in answer.get("assets") or []:
            if not isinstance(item, dict) or not item.get("adamId"):
                continue
            key = (str(item["adamId"])[:32], str(item.get("pricingParam") or "STDQ")[:16])
            seen.add(key)
            row = existing.get(key)
            if row is None:
                row = VppAsset(adam_id=key[0], pricing_param=key[1])
                session.add(row)
                existing[key] = row
            row.product_type = str(item.get("productType") or "")[:32] or None
            row.device_assignable = bool(item.get("deviceAssignable", True))
            row.revocable = bool(item.get("revocable", True))
            platforms = item.get("supportedPlatforms")
            row.supported_platforms = [str(p) for p in platforms] if isinstance(platforms, list) else []
            row.total_count = _count(item, "totalCount")
            row.assigned_count = _count(item, "assignedCount")
            row.available_count = _count(item, "availableCount")
            row.retired_count = _count(item, "retiredCount")
            row.synced_at = now
        following = answer.get("nextPageIndex")
        page = following if isinstance(following, int) and following > page else None
    removed = 0
    if page is None:  # only a complete listing can say what is gone
        for key, row in existing.items():
            if key not in seen:
                session.delete(row)
                removed += 1
    return len(seen), pages, removed


def _count(item: dict[str, Any], name: str) -> int:
    value = item.get(name)
    return value if isinstance(value, int) and value >= 0 else 0


def poll_events(session: Session, client: VppClient, limit: int = EVENTS_PER_RUN) -> tuple[int, int]:
    """(events checked, events finished): the oldest pending events first."""
    pending = list(
        session.scalars(
            select(VppEvent).where(VppEvent.status == "PENDING").order_by(VppEvent.id).limit(limit)
        )
    )
    finished = 0
    for event in pending:
        finished += poll_event(session, client, event)
    return len(pending), finished


def poll_event(session: Session, client: VppClient, event: VppEvent) -> bool:
    """Ask the service about one event and apply its outcome; True when it finished."""
    if clock.now() - event.created_at > EVENT_GIVE_UP:
        # Never confirmed: its licenses are taken as not held, and the next request for one asks
        # the service's assignments first, so one that was assigned after all is not asked twice.
        event.status, event.completed_at = "FAILED", clock.now()
        _apply(session, event, [], whole_event_failed=True)
        record_event(
            session, SYSTEM, "vpp.event_abandoned", "vpp_event", event.id, {"event_type": event.event_type}
        )
        return True
    answer = client.event_status(event.event_id)
    event.polls += 1
    event.checked_at = clock.now()
    status = str(answer.get("eventStatus") or "PENDING").upper()
    event.num_requested = _count(answer, "numRequested") if "numRequested" in answer else event.num_requested
    event.num_completed = _count(answer, "numCompleted") if "numCompleted" in answer else event.num_completed
    if status not in ("COMPLETE", "FAILED"):
        return False
    failures = [f for f in answer.get("failures") or [] if isinstance(f, dict)]
    event.status = status
    event.failures = failures[:1000]
    event.completed_at = clock.now()
    _apply(session, event, failures, whole_event_failed=status == "FAILED")
    record_event(
        session,
        SYSTEM,
        "vpp.event_completed",
        "vpp_event",
        event.id,
        {"event_type": event.event_type, "status": status, "failures": len(failures)},
    )
    return True


def _apply(
    session: Session, event: VppEvent, failures: list[dict[str, Any]], *, whole_event_failed: bool
) -> None:
    failed = {(str(f.get("adamId") or ""), str(f.get("serialNumber") or "")): f for f in failures}
    rows = session.scalars(select(VppAssignment).where(VppAssignment.event_id == event.event_id))
    now = clock.now()
    for row in rows:
        failure = failed.get((row.adam_id, row.serial_number))
        row.updated_at = now
        if event.event_type == "ASSOCIATE" and row.state == VppAssignmentState.PENDING:
            if failure is None and not whole_event_failed:
                row.state, row.reason = VppAssignmentState.ASSIGNED, None
                continue
            row.state = VppAssignmentState.FAILED
            row.reason = failure_reason(failure)
            asset = session.scalars(
                select(VppAsset).where(
                    VppAsset.adam_id == row.adam_id, VppAsset.pricing_param == row.pricing_param
                )
            ).first()
            if asset is not None:
                if failure is not None and failure.get("errorNumber") == NOT_ENOUGH_LICENSES:
                    asset.available_count = 0
                else:  # the license counted as taken when it was asked for was not
                    asset.available_count += 1
                    asset.assigned_count = max(0, asset.assigned_count - 1)
        elif event.event_type == "DISASSOCIATE" and row.state == VppAssignmentState.RELEASING:
            if failure is None and not whole_event_failed:
                session.delete(row)
            else:
                row.state = VppAssignmentState.ASSIGNED
                row.reason = "release failed: " + failure_reason(failure)


def failure_reason(failure: dict[str, Any] | None) -> str:
    if failure is None:
        return "the service failed the request, or did not confirm it within a day"
    number = failure.get("errorNumber")
    if number == NOT_ENOUGH_LICENSES:
        return "no license left for this app in the location"
    message = str(failure.get("errorMessage") or "refused")[:400]
    return f"{number}: {message}" if number is not None else message


def sync(session: Session, client: VppClient, settings: Settings, *, actor: Actor = SYSTEM) -> SyncReport:
    token = active_token(session)
    if token is None:
        raise NoVppToken("no Apps and Books content token has been uploaded")
    claim_token(session, client, settings, token, actor)
    changed = learn_location(session, client, token, actor)
    assets, pages, removed = sync_assets(session, client)
    checked, finished = poll_events(session, client)
    token.last_sync_at = clock.now()
    token.last_error = None
    token.last_error_at = None
    record_event(
        session,
        actor,
        "vpp.synced",
        "vpp_token",
        token.id,
        {"location": token.location_name, "assets": assets, "removed": removed, "events_finished": finished},
    )
    return SyncReport(token.location_name, changed, assets, pages, removed, checked, finished)


def record_failure(session: Session, exc: Exception) -> None:
    token = active_token(session)
    if token is None:
        return
    token.last_error = str(exc)[:512]
    token.last_error_at = clock.now()
