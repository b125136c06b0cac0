"""Configuration profiles: write, validate, preview, export, assign to org units, and see per device
what is desired and what is installed.

Profiles themselves are shared by the whole organisation; what a scoped principal may touch is
bounded by its units: it assigns only inside its subtree, sees only those assignments, and may not
change a profile that is also assigned outside its subtree (a new version reaches every device).
"""

from __future__ import annotations

from typing import Any

from flask import Response
from marshmallow import ValidationError
from sqlalchemy import func, select

from mdm.doors.appctx import command_context, db_session, settings
from mdm.ground.ca import CANotReady
from mdm.ground.models import Device, OrgUnit, Profile, ProfileAssignment, ProfileVersion
from profiles import assignment as assignments
from profiles import export as exports
from profiles import service
from profiles.rendering import ANDROID, APPLE, RenderError, RenderResult
from profiles.signing import server_render_context
from profiles.spec import validate_spec
from profiles.summary import dotted_messages, has_secrets, payload_summaries, redacted_spec
from profiles.templates import list_templates
from web.api.auth import current_principal
from web.api.base import ID, ApiBlueprint, permission
from web.api.profiles_schemas import (
    AssignedSchema,
    AssignmentSchema,
    AssignSchema,
    DeviceProfileStateSchema,
    ExportQuerySchema,
    FromTemplateSchema,
    PreviewQuerySchema,
    PreviewSchema,
    ProfileDetailSchema,
    ProfileSchema,
    ProfileSpecInSchema,
    TemplateSchema,
    ValidatedSchema,
)
from web.errors import ApiError, field_error
from web.queries import visible_device, visible_unit
from web.rbac import Permission, Principal

blp = ApiBlueprint("profiles", __name__, url_prefix="/api/v1", description="Configuration profiles")

MOBILECONFIG = "application/x-apple-aspen-config"
_EXPORT_DOC = {
    "responses": {
        "200": {
            "description": "Apple: the signed .mobileconfig (DER CMS); Android: the Policy JSON",
            "content": {
                MOBILECONFIG: {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": {"type": "object"}},
            },
        }
    }
}


# -- helpers ------------------------------------------------------------------------------------


def spec_error(exc: ValidationError) -> ApiError:
    fields = dotted_messages(exc.messages)
    return ApiError(400, "invalid profile: " + ", ".join(sorted(fields)), fields=fields)


def _unavailable(exc: Exception) -> ApiError:
    return ApiError(503, f"profiles cannot be rendered now: {exc}", code="unavailable")


def _profile_or_404(profile_id: int) -> Profile:
    profile = service.get_profile(db_session(), profile_id)
    if profile is None:
        raise ApiError(404, f"no profile with id {profile_id}")
    return profile


def _visible_assignments(principal: Principal, profile: Profile) -> list[ProfileAssignment]:
    rows = assignments.list_assignments(db_session(), profile=profile)
    return [row for row in rows if principal.sees_unit(row.org_unit_id)]


def _assignment_view(row: ProfileAssignment) -> dict[str, Any]:
    unit = db_session().get(OrgUnit, row.org_unit_id)
    return {
        "id": row.id,
        "profile_id": row.profile_id,
        "org_unit_id": row.org_unit_id,
        "org_unit_name": unit.display_name if unit is not None else str(row.org_unit_id),
        "assigned_by": row.assigned_by,
        "assigned_at": row.assigned_at,
    }


def _reconcile_view(summary: assignments.ReconcileSummary | None) -> dict[str, int] | None:
    if summary is None:
        return None
    return {
        "devices": summary.devices,
        "installs": len(summary.installs),
        "removals": len(summary.removals),
        "cancelled": len(summary.cancelled),
    }


def _profile_view(profile: Profile, assignment_count: int) -> dict[str, Any]:
    return {
        "id": profile.id,
        "identifier": profile.identifier,
        "name_ja": profile.name_ja,
        "name_en": profile.name_en,
        "description": profile.description,
        "version": profile.version,
        "payloads": payload_summaries(profile.spec),
        "assignment_count": assignment_count,
        "created_at": profile.created_at,
        "updated_at": profile.updated_at,
    }


def _detail_view(profile: Profile, reconcile: assignments.ReconcileSummary | None = None) -> dict[str, Any]:
    principal = current_principal()
    session = db_session()
    visible = _visible_assignments(principal, profile)
    # Secrets are shown to nobody once entered, writers included (profiles.secret_settings).
    redact = has_secrets(profile.spec)
    versions = session.scalars(
        select(ProfileVersion).where(ProfileVersion.profile_id == profile.id).order_by(ProfileVersion.version)
    )
    return {
        **_profile_view(profile, len(visible)),
        "spec": redacted_spec(profile.spec) if redact else profile.spec,
        "secrets_redacted": redact,
        "versions": [
            {"version": v.version, "created_by": v.created_by, "created_at": v.created_at} for v in versions
        ],
        "assignments": [_assignment_view(row) for row in visible],
        "reconcile": _reconcile_view(reconcile),
    }


def _check_may_change(principal: Principal, profile: Profile) -> None:
    """A scoped principal may not change a profile that also reaches devices outside its scope."""
    if not principal.scoped:
        return
    outside = [
        row.org_unit_id
        for row in assignments.list_assignments(db_session(), profile=profile)
        if not principal.sees_unit(row.org_unit_id)
    ]
    if outside:
        raise ApiError(
            403, "the profile is also assigned outside your org units; only an unscoped user can change it"
        )


# -- profiles -----------------------------------------------------------------------------------


@blp.route("/profiles", methods=["GET"])
@blp.response(200, ProfileSchema(many=True))
@permission(Permission.PROFILE_READ)
def list_profiles() -> Any:
    """Every profile with its current version and payloads (by identifier)."""
    principal = current_principal()
    session = db_session()
    counts: dict[int, int] = {}
    stmt = select(ProfileAssignment.profile_id, func.count(ProfileAssignment.id)).group_by(
        ProfileAssignment.profile_id
    )
    if principal.scope_unit_ids is not None:
        stmt = stmt.where(ProfileAssignment.org_unit_id.in_(sorted(principal.scope_unit_ids)))
    counts = {profile_id: int(count) for profile_id, count in session.execute(stmt)}
    return [_profile_view(p, counts.get(p.id, 0)) for p in service.list_profiles(session)]


@blp.route("/profiles", methods=["POST"])
@blp.arguments(ProfileSpecInSchema)
@blp.response(201, ProfileDetailSchema)
@permission(Permission.PROFILE_WRITE)
def create_profile(body: dict[str, Any]) -> Any:
    """Create a profile (version 1) from a spec; nothing is assigned yet."""
    session = db_session()
    try:
        profile = service.create_profile(
            session, current_principal().actor, body, secret_key=settings().secret_key
        )
    except ValidationError as exc:
        raise spec_error(exc) from exc
    session.commit()
    return _detail_view(profile)


@blp.route("/profiles/validate", methods=["POST"])
@blp.arguments(ProfileSpecInSchema)
@blp.response(200, ValidatedSchema)
@permission(Permission.PROFILE_READ)
def validate_profile(body: dict[str, Any]) -> Any:
    """Check a spec without storing anything: the normalized spec, or 400 naming every bad field."""
    try:
        return {"spec": redacted_spec(validate_spec(body))}
    except ValidationError as exc:
        raise spec_error(exc) from exc


@blp.route("/profiles/from-template", methods=["POST"])
@blp.arguments(FromTemplateSchema)
@blp.response(201, ProfileDetailSchema)
@permission(Permission.PROFILE_WRITE)
def create_from_template(body: dict[str, Any]) -> Any:
    """Create a profile from a built-in template under your own identifier."""
    session = db_session()
    try:
        profile = service.create_profile_from_template(
            session,
            current_principal().actor,
            body["template"],
            identifier=body["identifier"],
            name_ja=body.get("name_ja"),
            name_en=body.get("name_en"),
            secret_key=settings().secret_key,
        )
    except ValidationError as exc:
        raise spec_error(exc) from exc
    session.commit()
    return _detail_view(profile)


@blp.route(f"/profiles/<{ID}:profile_id>", methods=["GET"])
@blp.response(200, ProfileDetailSchema)
@permission(Permission.PROFILE_READ)
def get_profile(profile_id: int) -> Any:
    """One profile: its spec, versions and the assignments you can see."""
    return _detail_view(_profile_or_404(profile_id))


@blp.route(f"/profiles/<{ID}:profile_id>", methods=["PUT"])
@blp.arguments(ProfileSpecInSchema)
@blp.response(200, ProfileDetailSchema)
@permission(Permission.PROFILE_WRITE)
def update_profile(body: dict[str, Any], profile_id: int) -> Any:
    """Replace the spec. A change is a new version, installed again on every device that has it;
    an identical spec changes nothing. The identifier cannot change."""
    principal = current_principal()
    profile = _profile_or_404(profile_id)
    _check_may_change(principal, profile)
    session = db_session()
    try:
        profile, summary = assignments.update_profile_and_apply(
            session, settings(), profile, body, actor=principal.actor, context=command_context()
        )
    except ValidationError as exc:
        raise spec_error(exc) from exc
    except (CANotReady, RenderError) as exc:
        raise _unavailable(exc) from exc
    session.commit()
    return _detail_view(profile, summary)


def _report(items: list[dict[str, str]], text_key: str) -> list[dict[str, str]]:
    return [{"payload": i["payload"], "field": i["field"], "text": i[text_key]} for i in items]


def _rendering_view(result: RenderResult) -> dict[str, Any]:
    content = result.content.decode("utf-8") if isinstance(result.content, bytes) else result.content
    return {
        "content": content,
        "unsupported": _report(result.unsupported, "reason"),
        "notes": _report(result.notes, "note"),
    }


@blp.route(f"/profiles/<{ID}:profile_id>/preview", methods=["GET"])
@blp.arguments(PreviewQuerySchema, location="query", as_kwargs=True)
@blp.response(200, PreviewSchema)
@permission(Permission.PROFILE_READ)
def preview_profile(profile_id: int, version: int | None = None) -> Any:
    """The Apple plist (unsigned, as text) and the Android Policy, with what each platform cannot
    express. Secrets are shown to nobody (as ********)."""
    session = db_session()
    profile = _profile_or_404(profile_id)
    source: Profile | ProfileVersion = profile
    if version is not None and version != profile.version:
        found = service.get_profile_version(session, profile, version)
        if found is None:
            raise field_error("version", f"{profile.identifier} has no version {version}")
        source = found
    try:
        results = service.preview_profile(source, server_render_context(session, settings()))
    except (CANotReady, RenderError) as exc:
        raise _unavailable(exc) from exc
    return {
        "profile_id": profile.id,
        "version": source.version,
        "apple": _rendering_view(results[APPLE]),
        "android": _rendering_view(results[ANDROID]),
    }


@blp.route(f"/profiles/<{ID}:profile_id>/export", methods=["GET"])
@blp.arguments(ExportQuerySchema, location="query", as_kwargs=True)
@blp.doc(**_EXPORT_DOC)
@permission(Permission.PROFILE_WRITE)
def export_profile(profile_id: int, platform: str) -> Response:
    """The installable profile: a signed .mobileconfig (Apple) or the Policy JSON (Android).

    Needs profile.write (administrators): an export carries the profile's secrets (Wi-Fi
    passphrases), and each export is audited (`profile.exported`)."""
    session = db_session()
    profile = _profile_or_404(profile_id)
    try:
        exported = exports.export_profile(
            session, settings(), profile, platform, actor=current_principal().actor
        )
    except (CANotReady, RenderError) as exc:
        raise _unavailable(exc) from exc
    session.commit()
    return Response(
        exported.data,
        content_type=exported.content_type,
        headers={"Content-Disposition": f'attachment; filename="{exported.filename}"'},
    )


# -- templates ----------------------------------------------------------------------------------


@blp.route("/profile-templates", methods=["GET"])
@blp.response(200, TemplateSchema(many=True))
@permission(Permission.PROFILE_READ)
def list_profile_templates() -> Any:
    """The built-in templates an HQ starts from (create one with POST /profiles/from-template)."""
    return [
        {
            "slug": t.slug,
            "name_ja": t.name_ja,
            "name_en": t.name_en,
            "description": t.spec["description"],
            "spec": t.spec,
        }
        for t in list_templates()
    ]


# -- assignments --------------------------------------------------------------------------------


@blp.route(f"/profiles/<{ID}:profile_id>/assignments", methods=["GET"])
@blp.response(200, AssignmentSchema(many=True))
@permission(Permission.PROFILE_READ)
def list_profile_assignments(profile_id: int) -> Any:
    """The org units the profile is assigned to (those you can see)."""
    profile = _profile_or_404(profile_id)
    return [_assignment_view(row) for row in _visible_assignments(current_principal(), profile)]


@blp.route(f"/profiles/<{ID}:profile_id>/assignments", methods=["POST"])
@blp.arguments(AssignSchema)
@blp.response(201, AssignedSchema)
@permission(Permission.PROFILE_WRITE)
def assign_profile(body: dict[str, Any], profile_id: int) -> Any:
    """Assign the profile to an org unit and everything below it; installs are queued and pushed."""
    principal = current_principal()
    session = db_session()
    profile = _profile_or_404(profile_id)
    unit = visible_unit(session, principal, body["org_unit_id"])
    if unit is None:
        raise field_error("org_unit_id", f"no org unit with id {body['org_unit_id']}")
    try:
        summary = assignments.assign_profile(
            session, settings(), profile, unit, actor=principal.actor, context=command_context()
        )
    except ValidationError as exc:
        messages = dotted_messages(exc.messages).get("unit") or ["refused"]
        raise ApiError(400, "org_unit_id: " + "; ".join(messages), fields={"org_unit_id": messages}) from exc
    except (CANotReady, RenderError) as exc:
        raise _unavailable(exc) from exc
    session.commit()
    row = assignments.list_assignments(session, profile=profile, unit=unit)
    return {"assignment": _assignment_view(row[0]) if row else None, "reconcile": _reconcile_view(summary)}


@blp.route(f"/profiles/<{ID}:profile_id>/assignments/<{ID}:unit_id>", methods=["DELETE"])
@blp.response(200, AssignedSchema)
@permission(Permission.PROFILE_WRITE)
def unassign_profile(profile_id: int, unit_id: int) -> Any:
    """Take the profile off an org unit; devices no longer covered get it removed."""
    principal = current_principal()
    session = db_session()
    profile = _profile_or_404(profile_id)
    unit = visible_unit(session, principal, unit_id)
    if unit is None or not assignments.list_assignments(session, profile=profile, unit=unit):
        raise ApiError(404, f"{profile.identifier} is not assigned to org unit {unit_id}")
    summary = assignments.unassign_profile(
        session, settings(), profile, unit, actor=principal.actor, context=command_context()
    )
    session.commit()
    return {"assignment": None, "reconcile": _reconcile_view(summary)}


# -- per device ---------------------------------------------------------------------------------


@blp.route(f"/devices/<{ID}:device_id>/profiles", methods=["GET"])
@blp.response(200, DeviceProfileStateSchema(many=True))
@permission(Permission.PROFILE_READ)
def device_profiles(device_id: int) -> Any:
    """Per profile on the device: desired version, installed version, what is in flight, when the
    device last confirmed it (ProfileList); profiles Hikeshi did not install are listed as foreign."""
    session = db_session()
    device: Device | None = visible_device(session, current_principal(), device_id)
    if device is None:
        raise ApiError(404, f"no device with id {device_id}")
    states = assignments.device_profile_states(session, device)
    ids = {s.profile_id for s in states if s.profile_id is not None}
    names = (
        dict(session.execute(select(Profile.id, Profile.name_ja).where(Profile.id.in_(sorted(ids)))).all())
        if ids
        else {}
    )
    return [
        {
            "identifier": s.identifier,
            "profile_id": s.profile_id,
            "name": names.get(s.profile_id) if s.profile_id is not None else s.foreign_display_name,
            "foreign": s.is_foreign,
            "desired_version": s.desired_version,
            "installed_version": s.installed_version,
            "pending_action": s.pending_action,
            "pending_version": s.pending_version,
            "last_verified_at": s.last_verified_at,
            "last_error": s.last_error,
        }
        for s in states
    ]
