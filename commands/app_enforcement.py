"""Keeping each device's apps as its units say: required apps installed (and updated), blocked
apps reported and, where the unit says so, removed.

For an enrolled Apple device, every time its managed apps are reported (ManagedApplicationList,
MANAGED_APPS_REPORTED), it enrolls, or Setup Assistant waits for its configuration (ADE):

- a required app the device does not manage as installed (never sent, `ManagedButUninstalled`,
  `Failed`, ...) gets InstallApplication: App Store apps only with a device-based license from the
  LicenseProvider (without one the state says why and nothing is sent), in-house apps by the
  manifest URL Hikeshi serves. Installs are bounded: at most MAX_ATTEMPTS since the device last had
  the app, each waiting longer than the one before (RETRY_BASE doubling), never two at once;
- an installed required app whose catalog version or unit configuration changed gets
  InstallApplication again (Apple: a managed app is then updated and reconfigured);
- a blocked app found (in the app inventory or the managed list) is reported once, in the audit
  trail and in the device's app state; with the unit's block action "remove" a managed one gets
  RemoveApplication (an app the user installed is not managed: MDM cannot remove it, and the state
  says so);
- an app Hikeshi installed that no unit requires any more is removed, and its license released.

An app inventory answer (InstalledApplicationList) refreshes what is installed and, for a device
with required apps, asks for a ManagedApplicationList, whose answer drives the above. Android
devices are kept by their agent from the policy (mdm.services.apps.android); here they only get
their states and blocked-app reports.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.context import CommandContext
from commands.queue import CommandRefused, enqueue_command, pending_command_of_type
from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import (
    App,
    AppKind,
    AppRuleAction,
    BlockAction,
    Command,
    CommandStatus,
    Device,
    DeviceAppState,
    EnrollmentState,
    OrgUnit,
    UnitAppRule,
)
from mdm.services.apps.catalog import manifest_path, package_of
from mdm.services.apps.configuration import render_configuration, substitution_values
from mdm.services.apps.licensing import license_provider
from mdm.services.apps.rules import EffectiveRule, block_action_for, effective_rules
from mdm.services.apps.state import (
    IN_PROGRESS,
    INSTALLED,
    installed_identifiers,
    note_installed_apps,
    state_for,
    states_of,
)
from mdm.services.orgunits import subtree_ids

log = logging.getLogger(__name__)

ENFORCER = Actor("system:app-enforcement", "system")
MAX_ATTEMPTS = 5
RETRY_BASE = timedelta(minutes=15)
# A ManagedApplicationList answered this recently is fresh enough: an inventory answer does not ask again.
MANAGED_LIST_FRESH = timedelta(minutes=10)
INSTALL = "InstallApplication"
REMOVE = "RemoveApplication"
MANAGED_LIST = "ManagedApplicationList"
REMOVE_ON_UNENROLL = 1


def _manageable(device: Device) -> bool:
    return device.platform == "apple" and device.enrollment_state in (
        EnrollmentState.ENROLLED,
        EnrollmentState.PENDING,
    )


def _marker(app: App, configuration: dict[str, Any] | None) -> str:
    """What was sent: the catalog version and a digest of the configuration, so a change of either
    is pushed again."""
    digest = hashlib.sha256(json.dumps(configuration, sort_keys=True).encode()).hexdigest()[:8]
    return f"{(app.version or '')[:50]}#{digest}"


def _in_flight(session: Session, state: DeviceAppState) -> bool:
    if state.pending_command_uuid is None:
        return False
    status = session.scalars(select(Command.status).where(Command.uuid == state.pending_command_uuid)).first()
    if status is not None and status not in CommandStatus.FINAL:
        return True
    state.pending_command_uuid = state.pending_action = None  # over without an answer (expired)
    return False


def _may_try(state: DeviceAppState, now: datetime) -> bool:
    if state.attempts >= MAX_ATTEMPTS:
        state.reason = (
            f"gave up after {state.attempts} attempts: {state.reason or 'the device did not install it'}"
        )[:255]
        return False
    return state.next_attempt_at is None or now >= state.next_attempt_at


def _sent(state: DeviceAppState, command: Command, action: str, now: datetime) -> None:
    state.pending_command_uuid, state.pending_action = command.uuid, action
    state.attempts += 1
    state.next_attempt_at = now + RETRY_BASE * (2 ** (state.attempts - 1))
    state.updated_at = now


def converge_device(
    session: Session, device: Device, *, context: CommandContext, actor: Actor = ENFORCER
) -> None:
    """Compare the device's apps with its units' rules and queue what restores them."""
    if device.enrollment_state not in (EnrollmentState.ENROLLED, EnrollmentState.PENDING):
        return
    now = clock.now()
    rules = effective_rules(session, device)
    states = states_of(session, device)
    installed = installed_identifiers(session, device)
    for identifier, rule in rules.items():
        state = states.get(identifier) or state_for(session, device, identifier)
        assert state is not None
        states[identifier] = state
        state.desired = rule.action
        state.app_id = rule.app.id if rule.app else None
        if rule.action == AppRuleAction.REQUIRED and rule.app is not None:
            if device.platform == "apple":
                _keep_required(session, device, state, rule, now, context=context, actor=actor)
        elif rule.action == AppRuleAction.BLOCKED:
            _keep_blocked(session, device, state, identifier in installed, now, context=context, actor=actor)
    for identifier, state in states.items():
        if identifier in rules:
            continue
        state.desired = None
        _forget_or_remove(session, device, state, now, context=context, actor=actor)
    session.flush()


def _keep_required(
    session: Session,
    device: Device,
    state: DeviceAppState,
    rule: EffectiveRule,
    now: datetime,
    *,
    context: CommandContext,
    actor: Actor,
) -> None:
    app = rule.app
    assert app is not None
    if _in_flight(session, state):
        return
    configuration = render_configuration(rule.configuration, substitution_values(session, device))
    marker = _marker(app, configuration)
    status = state.managed_status
    if status in INSTALLED:
        state.installed = True
        if state.sent_version is None:
            state.sent_version = marker  # installed before Hikeshi tracked it: that is the baseline
        if state.sent_version == marker:
            state.attempts, state.next_attempt_at, state.reason = 0, None, None
            return
    elif status in IN_PROGRESS:
        return  # the device is at it; its next list says how it ended
    if not _may_try(state, now):
        return
    params: dict[str, Any] = {"ManagementFlags": REMOVE_ON_UNENROLL}
    if app.kind == AppKind.APP_STORE:
        if not device.serial_number:
            state.license_state, state.reason = (
                "unavailable",
                "license not available: serial number not known yet",
            )
            return
        outcome = license_provider(session).ensure_device_license(
            session, adam_id=str(app.itunes_store_id), serial_number=device.serial_number
        )
        state.license_state = outcome.state
        if not outcome.assigned:
            state.reason = (outcome.reason or f"license {outcome.state}")[:255]
            return
        params.update({"iTunesStoreID": app.itunes_store_id, "Options": {"PurchaseMethod": 1}})
    else:
        package = package_of(session, app)
        public_url = context.settings.public_url.rstrip("/") if context.settings else None
        if package is None or public_url is None:
            state.reason = (
                "in-house app cannot be offered: no file uploaded or the server's public URL is unknown"
            )
            return
        params["ManifestURL"] = public_url + manifest_path(package)
    if configuration is not None:
        params["Configuration"] = configuration
    if status == "UserInstalledApp" and device.is_supervised:
        params["ChangeManagementState"] = "Managed"  # take over the copy the user installed
    try:
        command = enqueue_command(session, device, INSTALL, params, actor=actor, context=context)
    except CommandRefused as exc:
        state.reason = f"not sent: {exc}"[:255]
        return
    _sent(state, command, "install", now)
    state.sent_version = marker
    state.reason = None
    if status in INSTALLED:
        record_event(
            session,
            actor,
            "app.update_sent",
            "device",
            device.id,
            {"identifier": app.identifier, "version": app.version},
        )


def _keep_blocked(
    session: Session,
    device: Device,
    state: DeviceAppState,
    in_inventory: bool,
    now: datetime,
    *,
    context: CommandContext,
    actor: Actor,
) -> None:
    present = in_inventory or state.managed_status in INSTALLED | IN_PROGRESS
    if not present:
        if state.blocked_reported_at is not None or state.reason:
            state.blocked_reported_at, state.reason, state.attempts, state.next_attempt_at = (
                None,
                None,
                0,
                None,
            )
        return
    action = block_action_for(session, device)
    if state.blocked_reported_at is None:
        state.blocked_reported_at = now
        record_event(
            session,
            actor,
            "app.blocked_app_found",
            "device",
            device.id,
            {"identifier": state.identifier, "platform": device.platform, "block_action": action},
        )
    if action != BlockAction.REMOVE or device.platform != "apple":
        if action == BlockAction.REPORT:
            state.reason = "blocked app installed: reported (the unit's block action is report only)"
        return
    if state.managed_status not in INSTALLED:
        state.reason = "blocked app installed by the user: not managed, MDM cannot remove it"
        return
    if _in_flight(session, state) or not _may_try(state, now):
        return
    try:
        command = enqueue_command(
            session, device, REMOVE, {"Identifier": state.identifier}, actor=actor, context=context
        )
    except CommandRefused as exc:
        state.reason = f"not sent: {exc}"[:255]
        return
    _sent(state, command, "remove", now)
    state.reason = "blocked app: removal sent"


def _forget_or_remove(
    session: Session,
    device: Device,
    state: DeviceAppState,
    now: datetime,
    *,
    context: CommandContext,
    actor: Actor,
) -> None:
    if _in_flight(session, state):
        return
    if device.platform == "apple" and state.managed_status in INSTALLED and state.sent_version is not None:
        if not _may_try(state, now):
            return
        try:
            command = enqueue_command(
                session, device, REMOVE, {"Identifier": state.identifier}, actor=actor, context=context
            )
        except CommandRefused:
            return
        _sent(state, command, "remove", now)
        state.sent_version = None
        _release_license(session, device, state)
        return
    if state.managed_status is None and not state.installed:
        session.delete(state)
    else:
        state.reason = None


def _release_license(session: Session, device: Device, state: DeviceAppState) -> None:
    app = session.get(App, state.app_id) if state.app_id else None
    if app is None or app.kind != AppKind.APP_STORE or not device.serial_number:
        return
    outcome = license_provider(session).release_device_license(
        session, adam_id=str(app.itunes_store_id), serial_number=device.serial_number
    )
    state.license_state = None if outcome.state in ("assigned", "not_configured") else outcome.state


# -- hooks (connected by mdm.roots.wiring) ---------------------------------------------------------


def after_managed_apps_reported(session: Session, device: Device, *, context: CommandContext) -> None:
    if _manageable(device):
        converge_device(session, device, context=context)


def after_inventory(session: Session, devices: list[Device], *, context: CommandContext) -> None:
    """INVENTORY_UPDATED: what the app inventory says is installed; blocked apps reported; a device
    with required apps asked for its managed list (answered: converge_device follows)."""
    if session.scalars(select(UnitAppRule.id).limit(1)).first() is None:
        return  # no unit has app rules: an inventory batch costs one query here
    now = clock.now()
    for device in devices:
        if not effective_rules(session, device):
            continue
        converge_device(session, device, context=context)
        note_installed_apps(session, device)
        if not _manageable(device) or device.enrollment_state != EnrollmentState.ENROLLED:
            continue
        if pending_command_of_type(session, device, MANAGED_LIST) is not None:
            continue
        last = session.scalars(
            select(Command.acknowledged_at)
            .where(Command.device_id == device.id, Command.request_type == MANAGED_LIST)
            .order_by(Command.id.desc())
            .limit(1)
        ).first()
        if last is None or now - last > MANAGED_LIST_FRESH:
            enqueue_command(session, device, MANAGED_LIST, {}, actor=ENFORCER, context=context)


def after_enrollment(session: Session, device: Device, actor: Actor, *, context: CommandContext) -> None:
    """DEVICE_ENROLLED and AWAITING_CONFIGURATION (ADE: queued before DeviceConfigured, which waits
    for them): the unit's required apps."""
    if _manageable(device):
        converge_device(session, device, context=context)


def follow_moved_device(
    session: Session,
    device: Device,
    from_unit_id: int | None,
    to_unit_id: int | None,
    actor: Actor,
    *,
    context: CommandContext,
) -> None:
    """orgunits.DEVICE_MOVED: the new unit's apps (and the old unit's no longer required)."""
    if device.enrollment_state in (EnrollmentState.ENROLLED, EnrollmentState.PENDING):
        converge_device(session, device, context=context)


def follow_moved_unit(session: Session, unit: OrgUnit, actor: Actor, *, context: CommandContext) -> None:
    """orgunits.UNIT_MOVED: the units above changed for every device below."""
    converge_unit(session, unit.id, context=context)


def converge_unit(session: Session, unit_id: int, *, context: CommandContext) -> int:
    """After a unit's app rules (or block action) changed: every enrolled device in it or below it
    follows at once. Returns how many devices were looked at."""
    devices = session.scalars(
        select(Device).where(
            Device.org_unit_id.in_(subtree_ids(session, unit_id)),
            Device.enrollment_state == EnrollmentState.ENROLLED,
        )
    ).all()
    for device in devices:
        converge_device(session, device, context=context)
    return len(devices)
