"""What a device has of its apps, from its own answers.

ManagedApplicationList (Apple) says which apps the server manages and in what state: `Managed`
is installed, `ManagedButUninstalled` was removed by the user, `Failed`/`UserRejected`/... say why
not. An acknowledged InstallApplication is only "the device queued it": this answer decides. An
app the answer does not list is not managed (a filtered query, with `Identifiers`, says nothing
of the apps it did not ask for). Services that follow the answer (enforcement) connect to
MANAGED_APPS_REPORTED.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.hooks import HookPoint
from mdm.ground.models import Device, DeviceAppState, InstalledApp

# Statuses in which the app is (or will shortly be) on the device as a managed app.
INSTALLED = frozenset({"Managed"})
IN_PROGRESS = frozenset(
    {
        "Queued",
        "NeedsRedemption",
        "Redeeming",
        "Prompting",
        "PromptingForLogin",
        "ValidatingPurchase",
        "PromptingForUpdate",
        "PromptingForUpdateLogin",
        "PromptingForManagement",
        "ValidatingUpdate",
        "Updating",
        "Installing",
    }
)
# The app is not there (or not as a managed app) and an install may be tried again.
MISSING = frozenset(
    {
        "ManagedButUninstalled",
        "Failed",
        "UserRejected",
        "UpdateRejected",
        "ManagementRejected",
        "UserInstalledApp",
        "Unknown",
    }
)
_MAX_STATUS = 32

ManagedAppsHook = Callable[[Session, Device], None]
MANAGED_APPS_REPORTED: HookPoint[ManagedAppsHook] = HookPoint("managed apps reported")


def state_for(
    session: Session, device: Device, identifier: str, *, create: bool = True
) -> DeviceAppState | None:
    state = session.scalars(
        select(DeviceAppState).where(
            DeviceAppState.device_id == device.id, DeviceAppState.identifier == identifier
        )
    ).first()
    if state is None and create:
        state = DeviceAppState(device_id=device.id, identifier=identifier, attempts=0, updated_at=clock.now())
        session.add(state)
    return state


def states_of(session: Session, device: Device) -> dict[str, DeviceAppState]:
    return {
        s.identifier: s
        for s in session.scalars(select(DeviceAppState).where(DeviceAppState.device_id == device.id))
    }


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _boolean(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def apply_managed_application_list(
    session: Session, device: Device, answer: Any, *, asked_for: Iterable[str] | None = None
) -> int:
    """Write a ManagedApplicationList answer into the device's app states; returns how many apps
    it listed. Unknown keys are ignored, entries that are not dictionaries skipped; apps the device
    no longer lists (among those asked for, or all) are recorded as not managed. Then the hooks run."""
    if not isinstance(answer, Mapping):
        return 0
    now = clock.now()
    states = states_of(session, device)
    listed: set[str] = set()
    for identifier, entry in answer.items():
        if (
            not isinstance(identifier, str)
            or not identifier
            or len(identifier) > 255
            or not isinstance(entry, Mapping)
        ):
            continue
        listed.add(identifier)
        state = states.get(identifier)
        if state is None:
            state = state_for(session, device, identifier)
            assert state is not None
            states[identifier] = state
        status = entry.get("Status")
        state.managed_status = status[:_MAX_STATUS] if isinstance(status, str) else "Unknown"
        state.management_flags = _integer(entry.get("ManagementFlags"))
        state.has_configuration = _boolean(entry.get("HasConfiguration"))
        external = _integer(entry.get("ExternalVersionIdentifier"))
        if external is not None:
            state.external_version_id = external
        state.reported_at = now
        state.updated_at = now
    scope = set(asked_for) if asked_for else None
    for identifier, state in states.items():
        if identifier in listed or (scope is not None and identifier not in scope):
            continue
        if state.managed_status is not None:
            state.managed_status = None
            state.updated_at = now
        state.reported_at = now
    session.flush()
    for hook in MANAGED_APPS_REPORTED.hooks(session):
        hook(session, device)
    return len(listed)


def note_installed_apps(session: Session, device: Device) -> None:
    """Copy what the last app inventory says (installed or not, which version) into the states."""
    installed = {
        row.identifier: row
        for row in session.scalars(select(InstalledApp).where(InstalledApp.device_id == device.id))
    }
    for identifier, state in states_of(session, device).items():
        row = installed.get(identifier)
        state.installed = row is not None
        state.installed_version = (row.short_version or row.version) if row is not None else None


def installed_identifiers(session: Session, device: Device) -> dict[str, InstalledApp]:
    return {
        row.identifier: row
        for row in session.scalars(select(InstalledApp).where(InstalledApp.device_id == device.id))
    }


def last_report(state: DeviceAppState) -> datetime | None:
    return state.reported_at


def pending_state(session: Session, command: Any) -> DeviceAppState | None:
    """The device's app whose install or removal is `command`."""
    return session.scalars(
        select(DeviceAppState).where(
            DeviceAppState.device_id == command.device_id, DeviceAppState.pending_command_uuid == command.uuid
        )
    ).first()


def answered_state(session: Session, command: Any) -> DeviceAppState | None:
    """The device's app whose install or removal `command` was, no longer waiting for it: the
    device has answered, whatever the answer (the caller records what it said)."""
    state = pending_state(session, command)
    if state is not None:
        state.pending_command_uuid = state.pending_action = None
        state.updated_at = clock.now()
    return state
