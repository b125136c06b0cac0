"""What the profiles assigned to a device's unit (profiles.assignment) expect of it: its app rules
and the profiles it should have installed: the wiring (mdm.roots.wiring) connects these two functions
to mdm.services.compliance.sources' APP_POLICY_SOURCES and EXPECTED_PROFILE_SOURCES.

A profile whose first install is still in flight (the device never held it) is not expected yet:
a "profile missing" finding for every device right after each assignment, or from a ProfileList
the device answered before it got to the install, would be noise. Once the device has held it,
it is expected whatever is in flight, so a removed profile stays reported until its reinstall is
acknowledged, and does not flap. An acknowledged install is judged only by a ProfileList answered
after the acknowledgement (ExpectedProfile.acknowledged_at).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from mdm.ground.models import Device, DeviceProfileState, Profile
from mdm.services.compliance.sources import (
    AppPolicy,
    ExpectedProfile,
    app_policy_from_specs,
    batch_of,
)
from profiles.assignment import (
    INSTALL,
    desired_profiles,
    desired_profiles_of,
    device_profile_states,
    device_profile_states_of,
)
from profiles.spec import profile_uuid


@dataclass(frozen=True)
class _BatchReads:
    desired: dict[int, list[Profile]]
    states: dict[int, list[DeviceProfileState]]


def _batch_reads(session: Session) -> _BatchReads | None:
    """The batch's desired profiles and profile states, read at its first device (devices
    evaluated together: the outbox drain's, a fleet check's page); None outside a batch. Read
    device by device, the unit tree and the assignments were read twice for every device."""
    batch = batch_of(session)
    if batch is None:
        return None
    found = batch.reads.get(__name__)
    if not isinstance(found, _BatchReads):
        devices = [d for d in (session.get(Device, i) for i in batch.device_ids) if d is not None]
        found = batch.reads[__name__] = _BatchReads(
            desired_profiles_of(session, devices), device_profile_states_of(session, batch.device_ids)
        )
    return found


def _desired(session: Session, device: Device) -> list[Profile]:
    reads = _batch_reads(session)
    if reads is not None and device.id in reads.desired:
        return reads.desired[device.id]
    return desired_profiles(session, device)


def _states(session: Session, device: Device) -> list[DeviceProfileState]:
    reads = _batch_reads(session)
    if reads is not None and device.id in reads.states:
        return reads.states[device.id]
    return device_profile_states(session, device)


def app_policy_from_assigned_profiles(session: Session, device: Device) -> AppPolicy | None:
    profiles = _desired(session, device)
    if not profiles:
        return None
    return app_policy_from_specs([p.spec for p in profiles], device.platform)


def expected_profiles_from_assignments(session: Session, device: Device) -> list[ExpectedProfile] | None:
    """The assigned profiles at their current version (Apple: the version's top-level PayloadUUID)."""
    if device.platform != "apple":
        return None  # Android devices get one merged policy (profiles.android_policy), not profiles
    profiles = _desired(session, device)
    if not profiles:
        return None
    states = {state.identifier: state for state in _states(session, device)}
    expected = []
    for profile in profiles:
        state = states.get(profile.identifier)
        if state is not None and state.first_confirmed_at is None and _install_in_flight(state, profile):
            continue
        acknowledged_at = (
            state.install_acknowledged_at
            if state is not None and state.installed_version == profile.version
            else None
        )
        expected.append(
            ExpectedProfile(
                profile.identifier,
                profile_uuid(profile.identifier, profile.version),
                profile.name_ja,
                acknowledged_at,
            )
        )
    return expected


def _install_in_flight(state: DeviceProfileState, profile: Profile) -> bool:
    return (
        state.pending_action == INSTALL
        and state.pending_command_uuid is not None
        and state.pending_version == profile.version
    )
