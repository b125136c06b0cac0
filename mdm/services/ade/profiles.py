"""The ADE profile of an org unit: what Setup Assistant does with a tablet bought for it.

Fire HQ tablets are shared field tablets: supervised, enrollment mandatory and not removable,
Setup Assistant waits at "Remote Management" until Hikeshi has installed the unit's profiles
(await_device_configured, then the DeviceConfigured command), and every pane a crew member should
not answer (Apple ID, Siri, Screen Time, ...) is skipped. Language Japanese, region Japan. The
department and support phone are shown on the Remote Management pane.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.lock_screen import phone_field
from enrollment.profile import server_anchor_certificates
from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.config import Settings
from mdm.ground.models import AdeProfile, OrgUnit
from mdm.services import orgunits

ENROLL_PATH = "/ade/enroll"

# Setup Assistant panes a shared field tablet skips (Apple's skip keys). Location is not skipped:
# maps and hospital selection need location services, which skipping the pane would leave off.
SHARED_TABLET_SKIP = (
    "Android",
    "Appearance",
    "AppleID",
    "Biometric",
    "DeviceToDeviceMigration",
    "Diagnostics",
    "DisplayTone",
    "FileVault",
    "HomeButtonSensitivity",
    "iCloudDiagnostics",
    "iCloudStorage",
    "iMessageAndFaceTime",
    "Keyboard",
    "MessagingActivationUsingPhoneNumber",
    "OnBoarding",
    "Payment",
    "Privacy",
    "Restore",
    "RestoreCompleted",
    "Safety",
    "ScreenTime",
    "SIMSetup",
    "Siri",
    "SoftwareUpdate",
    "TapToSetup",
    "TOS",
    "UpdateCompleted",
    "Welcome",
    "WatchMigration",
    "Zoom",
)


class AdeProfileSchema(Schema):
    """What an administrator sets per unit; the rest is fixed for fire HQ tablets."""

    department = fields.String(load_default="", validate=validate.Length(max=125))
    support_phone_number = phone_field(optional_blank=True, load_default="")
    support_email_address = fields.String(load_default="", validate=validate.Length(max=125))
    skip_setup_items = fields.List(
        fields.String(validate=validate.OneOf((*SHARED_TABLET_SKIP, "Location", "Passcode"))),
        load_default=list(SHARED_TABLET_SKIP),
    )
    language = fields.String(load_default="ja", validate=validate.Length(min=2, max=8))
    region = fields.String(load_default="JP", validate=validate.Regexp(r"^[A-Z]{2}$"))


class AdeProfileError(ValueError):
    def __init__(self, fields_: Mapping[str, Any]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields_.items()))
        self.fields = dict(fields_)


def profile_of(session: Session, unit_id: int) -> AdeProfile | None:
    return session.scalars(select(AdeProfile).where(AdeProfile.org_unit_id == unit_id)).first()


def save_profile(session: Session, unit: OrgUnit, data: Mapping[str, Any], *, actor: Actor) -> AdeProfile:
    """Set a unit's ADE profile; it is defined with the service (and reassigned) at the next sync."""
    try:
        clean = AdeProfileSchema().load(dict(data))
    except ValidationError as exc:
        raise AdeProfileError(
            exc.messages if isinstance(exc.messages, dict) else {"profile": exc.messages}
        ) from exc
    row = profile_of(session, unit.id)
    if row is None:
        row = AdeProfile(org_unit_id=unit.id, settings=clean, updated_by=actor.name)
        session.add(row)
    else:
        row.settings = clean
        row.updated_by = actor.name
    row.dirty = True
    row.updated_at = clock.now()
    session.flush()
    record_event(
        session, actor, "ade.profile_saved", "ade_profile", row.id, {"org_unit_id": unit.id, **clean}
    )
    return row


def service_profile(session: Session, settings: Settings, unit: OrgUnit, row: AdeProfile) -> dict[str, Any]:
    """The profile as the device assignment service takes it (POST /profile)."""
    values = {**AdeProfileSchema().load({}), **(row.settings or {})}
    profile: dict[str, Any] = {
        "profile_name": f"{settings.organization_name} {orgunits.path_label(session, unit)}"[:255],
        "url": settings.public_url.rstrip("/") + ENROLL_PATH,
        "is_supervised": True,
        "is_mandatory": True,
        "is_mdm_removable": False,
        "await_device_configured": True,
        "allow_pairing": False,
        "is_multi_user": False,
        "auto_advance_setup": False,
        "skip_setup_items": list(values["skip_setup_items"]),
        "language": values["language"],
        "region": values["region"],
        "department": values["department"] or settings.organization_name,
    }
    if values["support_phone_number"]:
        profile["support_phone_number"] = values["support_phone_number"]
    if values["support_email_address"]:
        profile["support_email_address"] = values["support_email_address"]
    anchors = server_anchor_certificates(settings)
    if anchors:
        # A server certificate from a private CA: Setup Assistant must trust it for the url.
        profile["anchor_certs"] = [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in anchors]
    return profile
