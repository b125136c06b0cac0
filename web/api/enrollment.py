"""Enrollment tokens: the secrets behind the QR codes that enroll tablets into a unit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from enrollment.android_settings import require_usable_provisioning
from enrollment.tokens import TokenError, create_token, enrollment_url, list_tokens, revoke_token, token_state
from mdm.doors.appctx import db_session, settings
from mdm.ground.models import EnrollmentToken
from web.api.auth import current_principal
from web.api.base import ID, ApiBlueprint, Extended, permission
from web.api.schemas import (
    EnrollmentTokenCreatedSchema,
    EnrollmentTokenCreateSchema,
    EnrollmentTokenSchema,
    RevokeSchema,
)
from web.errors import ApiError, field_error
from web.queries import visible_enrollment_token, visible_unit
from web.rbac import Permission

blp = ApiBlueprint("enrollment_tokens", __name__, url_prefix="/api/v1", description="Enrollment tokens")


def token_view(token: EnrollmentToken, **extra: Any) -> Extended:
    return Extended(token, state=token_state(token), **extra)


def _token_or_404(token_id: int) -> EnrollmentToken:
    token = visible_enrollment_token(db_session(), current_principal(), token_id)
    if token is None:
        raise ApiError(404, f"no enrollment token with id {token_id}")
    return token


@blp.route("/enrollment-tokens", methods=["GET"])
@blp.response(200, EnrollmentTokenSchema(many=True))
@permission(Permission.ENROLLMENT_READ)
def list_enrollment_tokens() -> Any:
    """Tokens of visible units, newest first (secrets are never shown again)."""
    scope = current_principal().scope_unit_ids
    tokens = list_tokens(db_session(), org_unit_ids=set(scope) if scope is not None else None)
    return [token_view(t) for t in tokens]


@blp.route("/enrollment-tokens", methods=["POST"])
@blp.arguments(EnrollmentTokenCreateSchema)
@blp.response(201, EnrollmentTokenCreatedSchema)
@permission(Permission.ENROLLMENT_WRITE)
def create_enrollment_token(body: dict[str, Any]) -> Any:
    """Create a token bound to a unit; its secret and QR code are returned this once."""
    principal = current_principal()
    session = db_session()
    if visible_unit(session, principal, body["org_unit_id"]) is None:
        raise field_error("org_unit_id", f"no org unit with id {body['org_unit_id']}")
    data = {
        "org_unit_id": body["org_unit_id"],
        "platform": body["platform"],
        "max_uses": body["max_uses"],
        "note": body["note"],
        "expires_in": timedelta(hours=body["expires_in_hours"]),
    }
    try:
        if data["platform"] == "android":
            require_usable_provisioning(session, settings())
        created = create_token(session, data, actor=principal.actor)
    except TokenError as exc:
        raise ApiError(400, str(exc), fields=exc.fields) from exc
    session.commit()
    url = enrollment_url(settings(), created.secret)
    return token_view(
        created.token,
        secret=created.secret,
        enrollment_url=url,
        qr_svg_url=url + "/qr.svg",
        sheet_url=url + "/sheet",
    )


@blp.route(f"/enrollment-tokens/<{ID}:token_id>", methods=["GET"])
@blp.response(200, EnrollmentTokenSchema)
@permission(Permission.ENROLLMENT_READ)
def get_enrollment_token(token_id: int) -> Any:
    """One token, its uses and state."""
    return token_view(_token_or_404(token_id))


@blp.route(f"/enrollment-tokens/<{ID}:token_id>/revoke", methods=["POST"])
@blp.arguments(RevokeSchema, required=False)
@blp.response(200, EnrollmentTokenSchema)
@permission(Permission.ENROLLMENT_WRITE)
def revoke_enrollment_token(body: dict[str, Any], token_id: int) -> Any:
    """Revoke at once: the QR code stops enrolling devices."""
    token = _token_or_404(token_id)
    session = db_session()
    revoke_token(session, token, actor=current_principal().actor, reason=body.get("reason"))
    session.commit()
    return token_view(token)
