"""API tokens (administrators only). The token text is shown once, at creation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from mdm.doors.appctx import db_session
from mdm.ground import clock
from mdm.ground.models import ApiToken, User
from web.api.auth import current_principal
from web.api.base import ApiBlueprint, Extended, permission
from web.api.schemas import ApiTokenCreatedSchema, ApiTokenCreateSchema, ApiTokenSchema
from web.api.users import check_unit_assignable
from web.auth.tokens import ApiTokenError, create_api_token, revoke_api_token
from web.errors import ApiError
from web.queries import visible_api_token, visible_api_tokens
from web.rbac import Permission

blp = ApiBlueprint("api_tokens", __name__, url_prefix="/api/v1", description="API tokens")


def _token_or_404(token_id: str) -> ApiToken:
    token = visible_api_token(db_session(), current_principal(), token_id)
    if token is None:
        raise ApiError(404, f"no API token {token_id}")
    return token


@blp.route("/api-tokens", methods=["GET"])
@blp.response(200, ApiTokenSchema(many=True))
@permission(Permission.APITOKEN_READ)
def list_tokens() -> Any:
    """Visible tokens, newest first."""
    return visible_api_tokens(db_session(), current_principal())


@blp.route("/api-tokens", methods=["POST"])
@blp.arguments(ApiTokenCreateSchema)
@blp.response(201, ApiTokenCreatedSchema)
@permission(Permission.APITOKEN_WRITE)
def create(body: dict[str, Any]) -> Any:
    """Create a token with a role, an optional unit scope and an expiry. It belongs to you (works
    while your account is enabled, never beyond your own role) unless `service_account` names the
    system it is for."""
    principal = current_principal()
    check_unit_assignable(principal, body["org_unit_id"])
    session = db_session()
    service_account = body.get("service_account")
    # A token belongs to the person who creates it (the owner of the calling token).
    owner = None
    if service_account is None and principal.person_id is not None:
        owner = session.get(User, principal.person_id)
    try:
        token, text = create_api_token(
            session,
            name=body["name"],
            role=body["role"],
            org_unit_id=body["org_unit_id"],
            expires_at=clock.now() + timedelta(days=body["expires_in_days"]),
            actor=principal.actor,
            owner=owner,
            service_account=service_account,
        )
    except ApiTokenError as exc:
        raise ApiError(400, f"{exc.field}: {exc}", fields={exc.field: [str(exc)]}) from exc
    session.commit()
    return Extended(token, token=text)


@blp.route("/api-tokens/<public_id:token_id>", methods=["GET"])
@blp.response(200, ApiTokenSchema)
@permission(Permission.APITOKEN_READ)
def get(token_id: str) -> Any:
    """One token (never its secret)."""
    return _token_or_404(token_id)


@blp.route("/api-tokens/<public_id:token_id>", methods=["DELETE"])
@blp.response(200, ApiTokenSchema)
@permission(Permission.APITOKEN_WRITE)
def revoke(token_id: str) -> Any:
    """Revoke the token at once."""
    token = _token_or_404(token_id)
    session = db_session()
    revoke_api_token(session, token, actor=current_principal().actor)
    session.commit()
    return token
