"""Bearer-token authentication and permission checks for every /api/v1 request.

Runs before the view, so an unauthenticated or unauthorized caller learns nothing from input
validation. A view that declares no permission is refused: deny by default.
"""

from __future__ import annotations

import logging

from flask import current_app, g, request

from mdm.doors.appctx import client_ip, db_session
from web.api.base import PERMISSION_ATTR
from web.auth.tokens import authenticate_api_token, record_use
from web.errors import ApiError
from web.rbac import Permission, Principal, permissions_of
from web.scope import scope_of

log = logging.getLogger(__name__)

API_ROOT = "/api/v1"
PUBLIC_ENDPOINTS = frozenset({"api-docs.openapi_json"})
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="hikeshi"'}


def current_principal() -> Principal:
    principal = g.get("principal")
    if principal is None:  # pragma: no cover - the before_request hook guarantees it
        raise ApiError(401, "authentication required")
    return principal


def _required_permission() -> Permission | None:
    rule = request.url_rule
    if rule is None:
        return None
    view = current_app.view_functions.get(rule.endpoint)
    view_class = getattr(view, "view_class", None)
    method = "get" if request.method == "HEAD" else request.method.lower()
    if view_class is not None:
        view = getattr(view_class, method, None)
    return getattr(view, PERMISSION_ATTR, None)


def authenticate_request() -> None:
    if not (request.path == API_ROOT or request.path.startswith(API_ROOT + "/")):
        return
    if request.url_rule is not None and request.url_rule.endpoint in PUBLIC_ENDPOINTS:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise ApiError(401, "send an API token as `Authorization: Bearer <token>`", headers=_CHALLENGE)
    session = db_session()
    check = authenticate_api_token(session, presented.strip())
    if check.token is None:
        log.info("API token refused (%s) from %s", check.problem, client_ip())
        message = {
            "expired": "the API token has expired",
            "revoked": "the API token has been revoked",
            "owner_disabled": "the API token's owner is disabled",
            "owner_removed": "the API token's owner no longer exists",
        }.get(check.problem or "", "the API token is not valid")
        raise ApiError(401, message, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    token, owner = check.token, check.owner
    scope = scope_of(session, token.org_unit_id)
    permissions = permissions_of(token.role)
    if owner is not None:
        # Never more than the person may do now: a demoted or re-scoped owner narrows the token.
        permissions &= permissions_of(owner.role)
        owner_scope = scope_of(session, owner.org_unit_id)
        if owner_scope is not None:
            scope = owner_scope if scope is None else scope & owner_scope
    principal = Principal(
        kind="token",
        id=token.id,
        name=f"{token.public_id}:{token.name}",
        role=token.role,
        org_unit_id=token.org_unit_id,
        scope_unit_ids=scope,
        source_ip=client_ip(),
        permissions=permissions,
        owner_user_id=owner.id if owner is not None else None,
    )
    if record_use(token, client_ip()):
        session.commit()
    g.principal = principal
    if request.url_rule is None:
        return  # 404 / 405 follow, in the API's error shape
    if request.method == "OPTIONS":
        return
    needed = _required_permission()
    if needed is None:
        log.error("API endpoint %s %s declares no permission: refused", request.method, request.url_rule)
        raise ApiError(403, "this endpoint is not available to API tokens")
    if not principal.can(needed):
        raise ApiError(403, f"the token's role ({token.role}) lacks the permission {needed.value}")
