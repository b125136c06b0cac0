"""App rules from the profiles assigned to a device's unit (profiles.assignment).

The expected-profiles source is left to profiles/: it knows which installs are still in flight,
and a "profile missing" finding for every device right after each assignment would be noise.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mdm.compliance.sources import AppPolicy, app_policy_from_specs, register_app_policy_source
from mdm.models import Device
from profiles.assignment import desired_profiles


@register_app_policy_source
def app_policy_from_assigned_profiles(session: Session, device: Device) -> AppPolicy | None:
    profiles = desired_profiles(session, device)
    if not profiles:
        return None
    return app_policy_from_specs([p.spec for p in profiles], device.platform)
