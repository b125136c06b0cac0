"""Console users (administrators only)."""

from __future__ import annotations

from typing import Any

from mdm.doors.appctx import db_session
from mdm.ground.models import User
from web.api.auth import current_principal
from web.api.base import ID, ApiBlueprint, Extended, permission
from web.api.schemas import (
    PasswordResetSchema,
    UserCreatedSchema,
    UserCreateSchema,
    UserSchema,
    UserUpdateSchema,
)
from web.auth.users import (
    UserError,
    create_user,
    disable_user,
    enable_user,
    reset_password,
    reset_second_factor,
    unlock_user,
    update_user,
)
from web.errors import ApiError, field_error
from web.queries import visible_unit, visible_user, visible_users
from web.rbac import Permission, Principal

blp = ApiBlueprint("users", __name__, url_prefix="/api/v1", description="Console users")


def acting_user_id(principal: Principal) -> int | None:
    return principal.id if principal.kind == "user" else None


def check_unit_assignable(principal: Principal, org_unit_id: int | None) -> None:
    """A scoped administrator can only give out scopes inside its own subtree."""
    if org_unit_id is None:
        if principal.scoped:
            raise field_error("org_unit_id", "a scoped administrator must scope users to a unit it manages")
        return
    if visible_unit(db_session(), principal, org_unit_id) is None:
        raise field_error("org_unit_id", f"no org unit with id {org_unit_id}")


def _user_or_404(user_id: int) -> User:
    user = visible_user(db_session(), current_principal(), user_id)
    if user is None:
        raise ApiError(404, f"no user with id {user_id}")
    return user


def _user_error(exc: UserError) -> ApiError:
    return ApiError(400, f"{exc.field}: {exc}", fields={exc.field: [str(exc)]})


@blp.route("/users", methods=["GET"])
@blp.response(200, UserSchema(many=True))
@permission(Permission.USER_READ)
def list_users() -> Any:
    """Visible users, by name."""
    return visible_users(db_session(), current_principal())


@blp.route("/users", methods=["POST"])
@blp.arguments(UserCreateSchema)
@blp.response(201, UserCreatedSchema)
@permission(Permission.USER_WRITE)
def create(body: dict[str, Any]) -> Any:
    """Create a user; the one-time password is returned this once (change forced at first login)."""
    principal = current_principal()
    check_unit_assignable(principal, body["org_unit_id"])
    session = db_session()
    try:
        user, password = create_user(
            session,
            username=body["username"],
            role=body["role"],
            display_name=body["display_name"],
            org_unit_id=body["org_unit_id"],
            actor=principal.actor,
        )
    except UserError as exc:
        raise _user_error(exc) from exc
    session.commit()
    return Extended(user, one_time_password=password)


@blp.route(f"/users/<{ID}:user_id>", methods=["GET"])
@blp.response(200, UserSchema)
@permission(Permission.USER_READ)
def get(user_id: int) -> Any:
    """One user."""
    return _user_or_404(user_id)


@blp.route(f"/users/<{ID}:user_id>", methods=["PATCH"])
@blp.arguments(UserUpdateSchema, required=False)
@blp.response(200, UserSchema)
@permission(Permission.USER_WRITE)
def update(body: dict[str, Any], user_id: int) -> Any:
    """Change role, display name or unit scope; disable or enable. Sessions end at once."""
    principal = current_principal()
    user = _user_or_404(user_id)
    session = db_session()
    me = acting_user_id(principal)
    try:
        kwargs: dict[str, Any] = {}
        if "org_unit_id" in body:
            check_unit_assignable(principal, body["org_unit_id"])
            kwargs["org_unit_id"] = body["org_unit_id"]
        update_user(
            session,
            user,
            actor=principal.actor,
            acting_user_id=me,
            role=body.get("role"),
            display_name=body.get("display_name"),
            **kwargs,
        )
        if body.get("disabled") is True:
            disable_user(session, user, actor=principal.actor, acting_user_id=me)
        elif body.get("disabled") is False:
            enable_user(session, user, actor=principal.actor)
    except UserError as exc:
        raise _user_error(exc) from exc
    session.commit()
    return user


@blp.route(f"/users/<{ID}:user_id>/password-reset", methods=["POST"])
@blp.response(200, PasswordResetSchema)
@permission(Permission.USER_WRITE)
def password_reset(user_id: int) -> Any:
    """A new one-time password for the user (shown once); their sessions end."""
    principal = current_principal()
    user = _user_or_404(user_id)
    session = db_session()
    try:
        _user, password = reset_password(
            session, user, actor=principal.actor, acting_user_id=acting_user_id(principal)
        )
    except UserError as exc:
        raise _user_error(exc) from exc
    session.commit()
    return {"one_time_password": password}


@blp.route(f"/users/<{ID}:user_id>/totp-reset", methods=["POST"])
@blp.response(200, UserSchema)
@permission(Permission.USER_WRITE)
def totp_reset(user_id: int) -> Any:
    """Forget the user's authenticator (lost phone): they enroll again at next login."""
    principal = current_principal()
    user = _user_or_404(user_id)
    session = db_session()
    try:
        reset_second_factor(session, user, actor=principal.actor, acting_user_id=acting_user_id(principal))
    except UserError as exc:
        raise _user_error(exc) from exc
    session.commit()
    return user


@blp.route(f"/users/<{ID}:user_id>/unlock", methods=["POST"])
@blp.response(200, UserSchema)
@permission(Permission.USER_WRITE)
def unlock(user_id: int) -> Any:
    """Lift the sign-in lock of the user's name (after repeated wrong passwords, perhaps by
    someone else); audited."""
    principal = current_principal()
    user = _user_or_404(user_id)
    session = db_session()
    unlock_user(session, user, actor=principal.actor)
    session.commit()
    return user
