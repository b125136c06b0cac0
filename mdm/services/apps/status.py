"""One word per device and app for people (console, API): what the device has against what its
units say, from what the device itself reported. Unknown stays unknown."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground.models import App, AppRuleAction, Device, DeviceAppState

LABELS = {
    "installed": ("インストール済み", "installed"),
    "behind": ("旧バージョン", "behind the catalog version"),
    "installing": ("インストール中", "installing"),
    "missing": ("未インストール", "not installed"),
    "unknown": ("不明 (未報告)", "unknown (not reported yet)"),
    "removing": ("削除中", "removing"),
    "blocked_present": ("禁止アプリあり", "blocked app present"),
    "absent": ("なし", "absent"),
    "not_required": ("対象外", "no longer required"),
}


def _behind(state: DeviceAppState, app: App | None) -> bool:
    if (
        app is None
        or app.platform != "android"
        or app.version_code is None
        or state.installed_version is None
    ):
        return False
    try:
        return int(state.installed_version) < app.version_code
    except ValueError:
        return False  # a version name, not a code: not comparable


def app_state_word(state: DeviceAppState, app: App | None) -> str:
    if state.desired == AppRuleAction.BLOCKED:
        return "blocked_present" if state.blocked_reported_at is not None else "absent"
    if state.pending_action == "remove":
        return "removing"
    android = app is not None and app.platform == "android"
    if state.managed_status == "Managed" or (android and state.installed):
        return "behind" if _behind(state, app) else "installed"
    if state.pending_action == "install" or state.managed_status in {"Queued", "Installing", "Updating"}:
        return "installing"
    if state.desired != AppRuleAction.REQUIRED:
        return "not_required"
    if state.reported_at is None and state.installed is None and state.reason is None:
        return "unknown"
    return "missing"


def device_app_states(session: Session, device: Device) -> list[tuple[DeviceAppState, App | None]]:
    """The device's state per app (by identifier), each with its catalog app: None when the state
    names no catalog app (e.g. a blocked identifier). Two statements whatever the number of apps."""
    states = session.scalars(
        select(DeviceAppState)
        .where(DeviceAppState.device_id == device.id)
        .order_by(DeviceAppState.identifier)
    ).all()
    apps = {
        a.id: a
        for a in session.scalars(select(App).where(App.id.in_({s.app_id for s in states if s.app_id})))
    }
    return [(state, apps.get(state.app_id) if state.app_id else None) for state in states]
