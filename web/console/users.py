"""Users and API tokens (administrators; auditors may look)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Response, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from mdm.doors.appctx import db_session
from mdm.ground import clock
from mdm.ground.models import User
from web.auth import lockout
from web.auth.tokens import ApiTokenError, create_api_token, revoke_api_token
from web.auth.users import (
    UserError,
    create_user,
    disable_user,
    enable_user,
    reset_password,
    reset_second_factor,
    set_user_email,
    unlock_user,
    update_user,
)
from web.console.blueprint import bp
from web.console.forms import ApiTokenForm, UserCreateForm, UserUpdateForm, load_form
from web.console.guard import ask_confirmation, confirmed, current_principal, needs
from web.console.labels import role_label
from web.queries import (
    visible_api_token,
    visible_api_tokens,
    visible_unit,
    visible_units,
    visible_user,
    visible_users,
)
from web.rbac import TOKEN_ROLES, USER_ROLES, Permission, Principal


def _unit_error(principal: Principal, unit_id: int | None) -> dict[str, list[str]]:
    if unit_id is None:
        return {"org_unit_id": [_("Choose a unit inside your scope.")]} if principal.scoped else {}
    if visible_unit(db_session(), principal, unit_id) is None:
        return {"org_unit_id": [_("Unknown unit.")]}
    return {}


def _users_page(errors: dict[str, list[str]] | None = None, form: dict[str, Any] | None = None) -> str:
    principal = current_principal()
    session = db_session()
    return render_template(
        "console/users.html",
        users=visible_users(session, principal),
        units=visible_units(session, principal),
        roles=USER_ROLES,
        errors=errors or {},
        form=form or {},
    )


@bp.route("/users")
@needs(Permission.USER_READ)
def users() -> str:
    return _users_page()


@bp.route("/users", methods=["POST"])
@needs(Permission.USER_WRITE)
def user_create() -> str:
    principal = current_principal()
    session = db_session()
    data, errors = load_form(UserCreateForm(), request.form)
    errors = errors or _unit_error(principal, data.get("org_unit_id"))
    if errors:
        return _users_page(errors, dict(request.form))
    try:
        user, password = create_user(
            session,
            username=data["username"],
            role=data["role"],
            display_name=data.get("display_name", ""),
            org_unit_id=data.get("org_unit_id"),
            actor=principal.actor,
        )
    except UserError as exc:
        session.rollback()
        return _users_page({exc.field: [_(str(exc))]}, dict(request.form))
    session.commit()
    return render_template("console/user_password.html", user=user, password=password, created=True)


def _user_or_404(user_id: int) -> User:
    user = visible_user(db_session(), current_principal(), user_id)
    if user is None:
        abort(404)
    return user


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
@needs(Permission.USER_READ)
def user_detail(user_id: int) -> Response | str:
    principal = current_principal()
    session = db_session()
    user = _user_or_404(user_id)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        if not principal.can(Permission.USER_WRITE):
            abort(403)
        data, errors = load_form(UserUpdateForm(), request.form)
        errors = errors or _unit_error(principal, data.get("org_unit_id"))
        if not errors:
            narrowing = data["role"] != user.role or data.get("org_unit_id") != user.org_unit_id
            if narrowing and not confirmed():
                return ask_confirmation(
                    _("Change role or scope"),
                    _(
                        "This makes %(user)s a “%(role)s”%(scope)s. Their open sessions end at once and "
                        "they must sign in again.",
                        user=user.username,
                        role=role_label(data["role"]),
                        scope=_(" limited to the selected unit") if data.get("org_unit_id") else "",
                    ),
                    action_label=_("Change"),
                )
            try:
                update_user(
                    session,
                    user,
                    actor=principal.actor,
                    acting_user_id=principal.id,
                    role=data["role"],
                    display_name=data.get("display_name", ""),
                    org_unit_id=data.get("org_unit_id"),
                )
                if "email" in request.form:
                    set_user_email(session, user, request.form.get("email"), actor=principal.actor)
                session.commit()
                flash(_("Saved."), "ok")
                return redirect(url_for("console.user_detail", user_id=user.id))  # type: ignore[return-value]
            except UserError as exc:
                session.rollback()
                errors = {exc.field: [_(str(exc))]}
    return render_template(
        "console/user.html",
        user=user,
        units=visible_units(session, principal),
        roles=USER_ROLES,
        errors=errors,
        is_me=user.id == g.user.id,
        locked_until=lockout.locked_until(session, user.username),
    )


USER_ACTIONS = ("disable", "enable", "reset_password", "reset_totp", "unlock")


@bp.route(
    "/users/<int:user_id>/<any(disable, enable, reset_password, reset_totp, unlock):action>", methods=["POST"]
)
@needs(Permission.USER_WRITE)
def user_action(user_id: int, action: str) -> Response | str:
    principal = current_principal()
    session = db_session()
    user = _user_or_404(user_id)
    questions = {
        "disable": (
            _("Disable user"),
            _(
                "This disables %(user)s: every open session ends at once and they can no longer sign in.",
                user=user.username,
            ),
            _("Disable"),
        ),
        "enable": (
            _("Enable user"),
            _("This lets %(user)s sign in again with their current password.", user=user.username),
            _("Enable"),
        ),
        "reset_password": (
            _("Reset password"),
            _(
                "This replaces the password of %(user)s with a one-time password shown once; their sessions "
                "end and they must choose a new password at next sign-in.",
                user=user.username,
            ),
            _("Reset password"),
        ),
        "unlock": (
            _("Unlock sign-in"),
            _("This lifts the sign-in lock of %(user)s set by repeated wrong passwords.", user=user.username),
            _("Unlock"),
        ),
        "reset_totp": (
            _("Reset two-factor authentication"),
            _(
                "This forgets the authenticator and recovery codes of %(user)s (lost phone); their sessions "
                "end and they set up a new authenticator at next sign-in.",
                user=user.username,
            ),
            _("Reset two-factor"),
        ),
    }
    if not confirmed():
        title, message, label = questions[action]
        return ask_confirmation(title, message, action_label=label, danger=action not in ("enable", "unlock"))
    try:
        if action == "disable":
            disable_user(session, user, actor=principal.actor, acting_user_id=principal.id)
        elif action == "enable":
            enable_user(session, user, actor=principal.actor)
        elif action == "reset_totp":
            reset_second_factor(session, user, actor=principal.actor, acting_user_id=principal.id)
        elif action == "unlock":
            unlock_user(session, user, actor=principal.actor)
        else:
            _user, password = reset_password(
                session, user, actor=principal.actor, acting_user_id=principal.id
            )
            session.commit()
            return render_template("console/user_password.html", user=user, password=password, created=False)
    except UserError as exc:
        session.rollback()
        flash(_(str(exc)), "error")
        return redirect(url_for("console.user_detail", user_id=user.id))  # type: ignore[return-value]
    session.commit()
    flash(_("Done."), "ok")
    return redirect(url_for("console.user_detail", user_id=user.id))  # type: ignore[return-value]


# -- API tokens ---------------------------------------------------------------------------------


def _token_owners(session: Any) -> dict[int, str]:
    return {user.id: user.username for user in session.scalars(select(User))}


def _tokens_page(errors: dict[str, list[str]] | None = None, form: dict[str, Any] | None = None) -> str:
    principal = current_principal()
    session = db_session()
    return render_template(
        "console/api_tokens.html",
        tokens=visible_api_tokens(session, principal),
        owners=_token_owners(session),
        units=visible_units(session, principal),
        roles=TOKEN_ROLES,
        now=clock.now(),
        errors=errors or {},
        form=form or {},
    )


@bp.route("/api-tokens")
@needs(Permission.APITOKEN_READ)
def api_tokens() -> str:
    return _tokens_page()


@bp.route("/api-tokens", methods=["POST"])
@needs(Permission.APITOKEN_WRITE)
def api_token_create() -> str:
    principal = current_principal()
    session = db_session()
    data, errors = load_form(ApiTokenForm(), request.form)
    errors = errors or _unit_error(principal, data.get("org_unit_id"))
    if errors:
        return _tokens_page(errors, dict(request.form))
    service_account = data.get("service_account") or None
    try:
        token, text = create_api_token(
            session,
            name=data["name"],
            role=data["role"],
            org_unit_id=data.get("org_unit_id"),
            expires_at=clock.now() + timedelta(days=data["expires_in_days"]),
            actor=principal.actor,
            # A token belongs to the person who creates it, unless it is for a service account.
            owner=None if service_account else session.get(User, principal.id),
            service_account=service_account,
        )
    except ApiTokenError as exc:
        session.rollback()
        return _tokens_page({exc.field: [str(exc)]}, dict(request.form))
    session.commit()
    return render_template("console/api_token_created.html", token=token, text=text)


@bp.route("/api-tokens/<string(maxlength=16):token_id>/revoke", methods=["POST"])
@needs(Permission.APITOKEN_WRITE)
def api_token_revoke(token_id: str) -> Response | str:
    principal = current_principal()
    session = db_session()
    token = visible_api_token(session, principal, token_id)
    if token is None:
        abort(404)
    if not confirmed():
        return ask_confirmation(
            _("Revoke API token"),
            _(
                "This revokes the API token “%(name)s” (%(id)s) at once: every system using it gets "
                "401 Unauthorized from its next request.",
                name=token.name,
                id=token.public_id,
            ),
            action_label=_("Revoke"),
        )
    revoke_api_token(session, token, actor=principal.actor)
    session.commit()
    flash(_("API token %(id)s revoked.", id=token.public_id), "ok")
    return redirect(url_for("console.api_tokens"))  # type: ignore[return-value]
