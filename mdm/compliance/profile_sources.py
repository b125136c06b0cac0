"""What the profiles assigned to a device's unit (profiles.assignment) expect of it: its app rules
and the profiles it should have installed, registered with mdm.compliance.sources on import
(mdm.compliance.evaluation imports this module, and the app factory loads that at start).

A newly assigned profile whose first install is still in flight is not expected yet: a "profile
missing" finding for every device right after each assignment would be noise. Once the device has
been checked with it (a ProfileList since the assignment), it is expected whatever is in flight,
so a removed profile stays reported until its reinstall is confirmed, and does not flap.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mdm.compliance.sources import (
    AppPolicy,
    ExpectedProfile,
    app_policy_from_specs,
    register_app_policy_source,
    register_expected_profiles_source,
)
from mdm.models import Device
from profiles.assignment import INSTALL, desired_profiles, device_profile_states
from profiles.spec import profile_uuid


@register_app_policy_source
def app_policy_from_assigned_profiles(session: Session, device: Device) -> AppPolicy | None:
    profiles = desired_profiles(session, device)
    if not profiles:
        return None
    return app_policy_from_specs([p.spec for p in profiles], device.platform)


@register_expected_profiles_source
def expected_profiles_from_assignments(session: Session, device: Device) -> list[ExpectedProfile] | None:
    """The assigned profiles at their current version (Apple: the version's top-level PayloadUUID)."""
    if device.platform != "apple":
        return None  # Android devices get one merged policy (profiles.android_policy), not profiles
    profiles = desired_profiles(session, device)
    if not profiles:
        return None
    not_yet = {
        (state.identifier, state.pending_version)
        for state in device_profile_states(session, device)
        if state.pending_action == INSTALL
        and state.pending_command_uuid is not None
        and state.last_verified_at is None
    }
    return [
        ExpectedProfile(
            profile.identifier, profile_uuid(profile.identifier, profile.version), profile.name_ja
        )
        for profile in profiles
        if (profile.identifier, profile.version) not in not_yet
    ]
