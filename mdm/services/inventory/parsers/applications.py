"""InstalledApplicationList → installed apps, with installs, removals and updates in history."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.models import Command, Device, InstalledApp
from mdm.services.inventory.events import inventory_updated
from mdm.services.inventory.facts import facts_for
from mdm.services.inventory.history import ChangeKind, record_change
from mdm.services.inventory.parsers.common import acknowledged
from mdm.services.inventory.values import integer, text


def parse_installed_applications(session: Session, command: Command, report: dict[str, Any]) -> None:
    if not acknowledged(command, report):
        return
    items = report.get("InstalledApplicationList")
    if not isinstance(items, list):
        return
    params = command.params or {}
    # A filtered query lists some apps only: what it does not list has not been removed.
    complete = not params.get("Identifiers") and not params.get("ManagedAppsOnly")
    managed = True if params.get("ManagedAppsOnly") else None
    apply_installed_applications(session, command.device, items, complete=complete, managed=managed)
    inventory_updated(session, command.device, "InstalledApplicationList")


def app_key(item: dict[str, Any]) -> str | None:
    """The bundle identifier; for a Mac app without one (a script bundle, an old Carbon app)
    its path, else its name, prefixed so it is never mistaken for a bundle identifier."""
    identifier = text(item.get("Identifier"))
    if identifier is not None:
        return identifier
    path = text(item.get("Path"), 249)
    if path is not None:
        return f"path:{path}"
    name = text(item.get("Name"), 249)
    return f"name:{name}" if name is not None else None


def apply_installed_applications(
    session: Session,
    device: Device,
    items: list[Any],
    *,
    complete: bool = True,
    managed: bool | None = None,
) -> None:
    now = clock.now()
    reported: dict[str, dict[str, Any]] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        identifier = app_key(item)
        if identifier is None or identifier in reported:
            continue
        reported[identifier] = {
            "name": text(item.get("Name")),
            "version": text(item.get("Version"), 64),
            "short_version": text(item.get("ShortVersion"), 64),
            "bundle_size": integer(item.get("BundleSize")),
        }
        if managed is not None:
            reported[identifier]["is_managed"] = managed
    facts = facts_for(session, device.id)
    # A complete list the same as the last one changes nothing: its rows are not read (a tablet
    # reports a hundred apps at every inventory, the same ones; issue 18). Only this function
    # writes installed_apps, and a partial list forgets the digest.
    digest = _list_digest(reported) if complete and managed is None else None
    if digest is not None and facts.applications_at is not None and facts.applications_digest == digest:
        facts.applications_at = now
        return
    # The facts the caller is writing are flushed with the rest, in one UPDATE, not before this
    # read: it reads no row they change.
    with session.no_autoflush:
        existing = {
            app.identifier: app
            for app in session.scalars(select(InstalledApp).where(InstalledApp.device_id == device.id))
        }
    first_inventory = facts.applications_at is None
    new_rows: list[dict[str, Any]] = []
    for identifier, values in reported.items():
        app = existing.get(identifier)
        if app is None:
            # New apps (a whole list at a first inventory) go in one multi-row INSERT.
            new_rows.append(
                {"device_id": device.id, "identifier": identifier, "first_seen_at": now, "updated_at": now}
                | values
            )
            if not first_inventory:
                record_change(
                    session, device.id, ChangeKind.APP_INSTALLED, identifier, None, values["short_version"]
                )
            continue
        if (app.short_version, app.version) != (values["short_version"], values["version"]):
            record_change(
                session,
                device.id,
                ChangeKind.APP_UPDATED,
                identifier,
                app.short_version,
                values["short_version"],
            )
        # `updated_at` is when the device last reported a change of the app; the list as a whole
        # was reported at the facts' applications_at. An unchanged app is not written (a tablet
        # reports every app at every inventory: a row each, issue 18).
        if any(getattr(app, key) != value for key, value in values.items()):
            for key, value in values.items():
                setattr(app, key, value)
            app.updated_at = now
    if new_rows:
        session.execute(insert(InstalledApp), new_rows)
    facts.applications_digest = digest
    if complete:
        for identifier, app in existing.items():
            if identifier not in reported:
                record_change(session, device.id, ChangeKind.APP_REMOVED, identifier, app.short_version, None)
                session.delete(app)
        facts.applications_at = now


def _list_digest(reported: dict[str, dict[str, Any]]) -> str:
    """What a complete list says of each app, in a form that is equal exactly when that is."""
    canonical = json.dumps(sorted(reported.items()), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
