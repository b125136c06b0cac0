"""An administrator's export of a profile: the installable file, secrets included.

An exported .mobileconfig or Android policy is meant to be installed by hand, so it carries the
profile's Wi-Fi passphrases; it is therefore rendered on request (never stored), only for those
who may write profiles (administrators), and every export is recorded in the audit trail with
whether it carried secrets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from marshmallow import ValidationError
from sqlalchemy.orm import Session

from mdm.ground.audit import Actor, record_event
from mdm.ground.config import Settings
from mdm.ground.models import Profile
from profiles.rendering import ANDROID, APPLE
from profiles.secret_settings import has_secrets
from profiles.service import render_profile
from profiles.signing import server_render_context, sign_apple_profile, signed_apple_profile

MOBILECONFIG = "application/x-apple-aspen-config"


@dataclass(frozen=True)
class ExportedProfile:
    data: bytes
    content_type: str
    filename: str
    secrets_included: bool


def export_profile(
    session: Session, settings: Settings, profile: Profile, platform: str, *, actor: Actor
) -> ExportedProfile:
    """The installable profile for `platform`, audited as `profile.exported`."""
    secrets = has_secrets(profile.spec)
    context = server_render_context(session, settings)
    if secrets:
        context = replace(context, secret_key=settings.secret_key)
    if platform == APPLE:
        if secrets:
            data = sign_apple_profile(session, settings, render_profile(profile, APPLE, context).content)
        else:
            data = signed_apple_profile(session, settings, profile)
        content_type, suffix = MOBILECONFIG, "mobileconfig"
    elif platform == ANDROID:
        policy = render_profile(profile, ANDROID, context).content
        data = json.dumps(policy, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")
        content_type, suffix = "application/json", "json"
    else:
        raise ValidationError({"platform": [f"Unknown platform {platform!r}; use 'apple' or 'android'."]})
    record_event(
        session,
        actor,
        "profile.exported",
        "profile",
        profile.id,
        {
            "identifier": profile.identifier,
            "version": profile.version,
            "platform": platform,
            "with_secrets": secrets,
        },
    )
    return ExportedProfile(data, content_type, f"{profile.identifier}-v{profile.version}.{suffix}", secrets)
