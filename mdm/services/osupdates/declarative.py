"""The declarative channel of one Apple device: what a DeclarativeManagement check-in asks
(Endpoint `tokens`, `declaration-items`, `declaration/<kind>/<identifier>`, `status`) and what the
device reports on its status channel.

The set a device is served is computed from its unit's update policy each time (never stored
whole); its DeclarationsToken is stored with the moment it last changed, which is the tokens'
Timestamp. Status reports are partial (a device sends only the items that changed), so each is
merged into the items last reported; unknown items and keys are kept as sent, bounded by the
check-in body limit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from commands.os_update_answers import updates_row
from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import Device, DeviceOsUpdate, OsRelease
from mdm.services.osupdates.declarations import DeclarationSet, declaration_set
from mdm.services.osupdates.policy import UpdatePolicyBook
from mdm.services.osupdates.targets import releases, target_for


class DeclarativeRequestError(ValueError):
    """A DeclarativeManagement check-in this server cannot answer (400)."""


class DeclarationNotFound(LookupError):
    """A declaration the device asked for is not in its set (404)."""


@dataclass(frozen=True)
class DeclarativeAnswer:
    body: bytes  # JSON; empty for a status report


# Status items whose value is a dictionary: a report is flattened to dotted names down to these.
_DICTIONARY_ITEMS = frozenset(
    {
        "softwareupdate.pending-version",
        "softwareupdate.failure-reason",
        "softwareupdate.install-reason",
        "management.declarations",
        "management.client-capabilities",
    }
)
_DECLARATION_KINDS = ("activations", "configurations", "assets", "management")


class _LookUp:
    """A device's update row not read yet (None: read, and there is none)."""


LOOK_UP = _LookUp()


def current_set(
    session: Session,
    device: Device,
    *,
    book: UpdatePolicyBook | None = None,
    fleet_releases: dict[str, OsRelease] | None = None,
    updates: DeviceOsUpdate | _LookUp | None = LOOK_UP,
) -> DeclarationSet:
    book = book or UpdatePolicyBook(session)
    if isinstance(updates, _LookUp):
        updates = session.get(DeviceOsUpdate, device.id)
    target = target_for(
        book.for_unit(device.org_unit_id),
        updates,
        releases(session) if fleet_releases is None else fleet_releases,
    )
    return declaration_set(target)


def refresh_token(session: Session, device: Device, found: DeclarationSet) -> tuple[str, datetime, bool]:
    """Store the set's token when it changed; (token, since when, changed)."""
    row = updates_row(session, device.id)
    token = found.token
    if row.declarations_token != token or row.declarations_token_at is None:
        row.declarations_token = token
        row.declarations_token_at = clock.now()
        return token, row.declarations_token_at, True
    return token, row.declarations_token_at, False


def sync_tokens(token: str, since: datetime) -> dict[str, Any]:
    return {"SyncTokens": {"DeclarationsToken": token, "Timestamp": since.strftime("%Y-%m-%dT%H:%M:%SZ")}}


def _json(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def answer(
    session: Session, device: Device, endpoint: object, data: object, *, actor: Actor
) -> DeclarativeAnswer:
    """One DeclarativeManagement check-in. Raises DeclarativeRequestError or DeclarationNotFound
    before anything is written."""
    if not isinstance(endpoint, str) or not endpoint:
        raise DeclarativeRequestError("Endpoint is missing or not a string")
    if endpoint == "status":
        record_status(session, device, _status_document(data), actor=actor)
        return DeclarativeAnswer(b"")
    found = current_set(session, device)
    if endpoint == "tokens":
        token, since, _ = refresh_token(session, device, found)
        return DeclarativeAnswer(_json(sync_tokens(token, since)))
    if endpoint == "declaration-items":
        refresh_token(session, device, found)
        updates_row(session, device.id).declarations_fetched_at = clock.now()
        return DeclarativeAnswer(_json(found.items()))
    parts = endpoint.split("/")
    if len(parts) == 3 and parts[0] == "declaration":
        declaration = found.find(parts[1], parts[2])
        if declaration is None:
            raise DeclarationNotFound(f"no declaration {parts[1]}/{parts[2]} for this device")
        return DeclarativeAnswer(_json(declaration.document()))
    raise DeclarativeRequestError(f"Endpoint {endpoint[:80]!r} is not supported")


def _status_document(data: object) -> dict[str, Any]:
    if not isinstance(data, bytes | bytearray):
        raise DeclarativeRequestError("a status report needs Data (the status report as JSON)")
    try:
        document = json.loads(bytes(data))
    except ValueError as exc:
        raise DeclarativeRequestError("Data of a status report is not JSON") from exc
    if not isinstance(document, dict):
        raise DeclarativeRequestError("Data of a status report is not a JSON object")
    return document


def flatten_items(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"softwareupdate": {"install-state": "none"}} → {"softwareupdate.install-state": "none"}."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value and name not in _DICTIONARY_ITEMS:
            flat.update(flatten_items(value, name))
        else:
            flat[name] = value
    return flat


def _declaration_states(value: Any) -> list[dict[str, Any]] | None:
    if not isinstance(value, dict):
        return None
    states = []
    for kind in _DECLARATION_KINDS:
        for entry in value.get(kind) or []:
            if isinstance(entry, dict) and isinstance(entry.get("identifier"), str):
                states.append(
                    {
                        "kind": kind,
                        "identifier": entry["identifier"],
                        "active": entry.get("active") if isinstance(entry.get("active"), bool) else None,
                        "valid": entry.get("valid") if isinstance(entry.get("valid"), str) else None,
                        "server_token": entry.get("server-token")
                        if isinstance(entry.get("server-token"), str)
                        else None,
                        "reasons": entry.get("reasons") if isinstance(entry.get("reasons"), list) else [],
                    }
                )
    return states


def record_status(session: Session, device: Device, document: dict[str, Any], *, actor: Actor) -> None:
    """Merge a (partial) status report into the device's items; the OS version it reports becomes
    the device's. Keys other than StatusItems and Errors are ignored."""
    items = document.get("StatusItems")
    reported = flatten_items(items) if isinstance(items, dict) else {}
    row = updates_row(session, device.id)
    before = dict(row.status_items or {})
    merged = {**before, **reported}
    row.status_items = merged
    errors = document.get("Errors")
    if isinstance(errors, list):
        row.status_errors = [e for e in errors if isinstance(e, dict)][:50]
    states = _declaration_states(reported.get("management.declarations"))
    if states is not None:
        row.declaration_states = states
    row.status_at = clock.now()
    version = reported.get("device.operating-system.version")
    build = reported.get("device.operating-system.build-version")
    changes: dict[str, Any] = {}
    if isinstance(version, str) and version and version != device.os_version:
        changes["os_version"] = [device.os_version, version[:32]]
        device.os_version = version[:32]
    if isinstance(build, str) and build and build != device.build_version:
        changes["build_version"] = [device.build_version, build[:32]]
        device.build_version = build[:32]
    watched: dict[str, Any] = {
        name: [before.get(name), reported[name]]
        for name in ("softwareupdate.install-state", "softwareupdate.failure-reason")
        if name in reported and reported[name] != before.get(name)
    }
    if not changes and not watched:
        return  # a report repeating what is known is not a change worth an audit event
    record_event(
        session,
        actor,
        "os_update.status_changed",
        "device",
        device.id,
        {**changes, **watched},
    )
