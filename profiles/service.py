"""Profile service: create and update profiles, keep their history, render them.

Service rules (DESIGN.md): take the Session, never commit, write an audit event with every change.
Bad specs raise marshmallow ValidationError naming the field (the API turns it into a 422).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import Profile, ProfileVersion
from profiles.android_render import render_android
from profiles.apple_render import render_apple
from profiles.rendering import ANDROID, APPLE, RenderContext, RenderResult
from profiles.secret_settings import keep_unchanged_secrets, redacted_spec, seal_spec
from profiles.spec import assign_payload_uuids, validate_spec
from profiles.templates import template_spec


def create_profile(
    session: Session, actor: Actor, spec: Mapping[str, Any], *, secret_key: str | None = None
) -> Profile:
    """Validate `spec` and store it as version 1 of a new profile, its secrets sealed with the
    instance secret `secret_key` (needed when the spec holds any)."""
    clean = seal_spec(validate_spec(keep_unchanged_secrets(spec, None, secret_key)), secret_key)
    identifier = clean["identifier"]
    if get_profile_by_identifier(session, identifier) is not None:
        raise ValidationError({"identifier": [f"A profile with identifier {identifier!r} already exists."]})
    now = clock.now()
    uuids = assign_payload_uuids(clean)
    profile = Profile(
        identifier=identifier,
        name_ja=clean["name_ja"],
        name_en=clean["name_en"],
        description=clean["description"],
        version=1,
        spec=clean,
        payload_uuids=uuids,
        created_at=now,
        updated_at=now,
    )
    try:
        # A savepoint, so a concurrent create of the same identifier leaves the caller's
        # transaction usable and the error names the field.
        with session.begin_nested():
            session.add(profile)
            session.flush()
    except IntegrityError as exc:
        raise ValidationError(
            {"identifier": [f"A profile with identifier {identifier!r} already exists."]}
        ) from exc
    _add_version(session, profile, actor, now)
    record_event(
        session,
        actor,
        "profile.created",
        "profile",
        profile.id,
        {"identifier": identifier, "version": 1, "payloads": _payload_summary(clean)},
    )
    return profile


def create_profile_from_template(
    session: Session,
    actor: Actor,
    slug: str,
    *,
    identifier: str,
    name_ja: str | None = None,
    name_en: str | None = None,
    secret_key: str | None = None,
) -> Profile:
    """A new profile from a built-in template (profiles.templates), under the HQ's identifier."""
    try:
        spec = template_spec(slug, identifier=identifier, name_ja=name_ja, name_en=name_en)
    except KeyError as exc:
        raise ValidationError({"template": [f"No template {slug!r}."]}) from exc
    return create_profile(session, actor, spec, secret_key=secret_key)


def update_profile(
    session: Session,
    actor: Actor,
    profile: Profile,
    spec: Mapping[str, Any],
    *,
    secret_key: str | None = None,
) -> Profile:
    """Replace the profile's spec; every change is a new version. An identical spec changes nothing.

    The identifier cannot change (devices know the profile by it). A secret sent as REDACTED keeps
    its stored value; secrets are sealed with `secret_key` (profiles.secret_settings)."""
    incoming = keep_unchanged_secrets(spec, profile.spec, secret_key)
    clean = seal_spec(validate_spec(incoming), secret_key, previous=profile.spec)
    if clean["identifier"] != profile.identifier:
        raise ValidationError(
            {"identifier": [f"The identifier of a profile cannot change (it is {profile.identifier!r})."]}
        )
    if clean == profile.spec:
        return profile
    previous_spec = profile.spec
    uuids = assign_payload_uuids(clean, previous_spec, profile.payload_uuids)
    now = clock.now()
    from_version = profile.version
    profile.version = from_version + 1
    profile.name_ja = clean["name_ja"]
    profile.name_en = clean["name_en"]
    profile.description = clean["description"]
    profile.spec = clean
    profile.payload_uuids = uuids
    profile.updated_at = now
    session.flush()
    _add_version(session, profile, actor, now)
    record_event(
        session,
        actor,
        "profile.updated",
        "profile",
        profile.id,
        {
            "identifier": profile.identifier,
            "from_version": from_version,
            "version": profile.version,
            "payloads": _payload_summary(clean),
            "changed_payloads": _changed_payloads(previous_spec, clean),
        },
    )
    return profile


def get_profile(session: Session, profile_id: int) -> Profile | None:
    return session.get(Profile, profile_id)


def get_profile_by_identifier(session: Session, identifier: str) -> Profile | None:
    return session.scalars(select(Profile).where(Profile.identifier == identifier)).first()


def list_profiles(session: Session) -> list[Profile]:
    return list(session.scalars(select(Profile).order_by(Profile.identifier)))


def get_profile_version(session: Session, profile: Profile, version: int) -> ProfileVersion | None:
    return session.scalars(
        select(ProfileVersion).where(
            ProfileVersion.profile_id == profile.id, ProfileVersion.version == version
        )
    ).first()


def render_profile(profile: Profile | ProfileVersion, platform: str, context: RenderContext) -> RenderResult:
    """Render a profile (its current version) or one historical version for `platform`."""
    spec, uuids, version = profile.spec, profile.payload_uuids, profile.version
    if platform == APPLE:
        return render_apple(spec, context, version=version, payload_uuids=uuids)
    if platform == ANDROID:
        return render_android(spec, context, version=version, payload_uuids=uuids)
    raise ValidationError({"platform": [f"Unknown platform {platform!r}; use 'apple' or 'android'."]})


def _add_version(session: Session, profile: Profile, actor: Actor, now: Any) -> ProfileVersion:
    row = ProfileVersion(
        profile_id=profile.id,
        version=profile.version,
        spec=profile.spec,
        payload_uuids=dict(profile.payload_uuids),
        created_by=actor.name,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def _payload_summary(spec: Mapping[str, Any]) -> list[str]:
    # Kinds and keys only: settings can hold a Wi-Fi password and belong in the version row.
    return [f"{p['kind']}:{p['key']}" for p in spec["payloads"]]


def _changed_payloads(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[str]]:
    before = {p["key"]: p for p in old["payloads"]}
    after = {p["key"]: p for p in new["payloads"]}
    return {
        "added": sorted(after.keys() - before.keys()),
        "removed": sorted(before.keys() - after.keys()),
        "changed": sorted(k for k in after.keys() & before.keys() if after[k] != before[k]),
    }


def preview_profile(profile: Profile | ProfileVersion, context: RenderContext) -> dict[str, RenderResult]:
    """Both renderings of a profile (or a saved version), unsigned, every secret shown as REDACTED
    (a preview is read by people; only delivery and an administrator's export carry secrets)."""
    spec = redacted_spec(profile.spec)
    uuids, version = profile.payload_uuids, profile.version
    return {
        APPLE: render_apple(spec, context, version=version, payload_uuids=uuids),
        ANDROID: render_android(spec, context, version=version, payload_uuids=uuids),
    }
