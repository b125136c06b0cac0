"""`hikeshi user`, `hikeshi token` and `hikeshi audit purge`: each command owns its transaction.

Attached to the main command by mdm.roots.cli (`COMMANDS`, `AUDIT_COMMANDS`); the click context object
(mdm.roots.cli's Context) gives `.settings` and `.session_factory()`.
"""

from __future__ import annotations

import getpass
import json
import sys
from datetime import timedelta
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, AuditChainBroken, purge_audit
from mdm.ground.db import transaction
from mdm.ground.models import ApiToken, OrgUnit, User
from mdm.services import orgunits
from web.auth.tokens import ApiTokenError, create_api_token, find_api_token, revoke_api_token
from web.auth.users import (
    UserError,
    bootstrap_first_admin,
    create_user,
    disable_user,
    enable_user,
    find_user_by_name,
    reset_password,
    reset_second_factor,
    unlock_user,
)
from web.rbac import TOKEN_ROLES, USER_ROLES


def _actor() -> Actor:
    return Actor(f"cli:{getpass.getuser()}", "admin", "local")


def _unit(session: Session, reference: str | None) -> OrgUnit | None:
    if reference is None:
        return None
    unit = orgunits.find_unit_by_code(session, reference)
    if unit is None and reference.lstrip("#").isdigit():
        unit = orgunits.get_unit(session, int(reference.lstrip("#")))
    if unit is None:
        raise click.BadParameter(f"no org unit with code or id {reference!r}", param_hint="--unit")
    return unit


def _user(session: Session, name: str) -> User:
    user = find_user_by_name(session, name)
    if user is None:
        raise click.ClickException(f"no user named {name}")
    return user


def _show_password(username: str, password: str) -> None:
    click.echo(f"one-time password for {username}: {password}")
    click.echo(
        "It is shown only now. The user must change it (and set up two-factor where the role asks) "
        "at first sign-in."
    )


# -- hikeshi user -----------------------------------------------------------------------------------


@click.group("user")
def user_group() -> None:
    """Console users."""


@user_group.command("create")
@click.option("--name", "username", required=True, help="User name (lowercase letters, digits, . _ -).")
@click.option("--role", required=True, type=click.Choice([r.value for r in USER_ROLES]))
@click.option("--display-name", default="", help="Full name shown in the console.")
@click.option("--unit", default=None, help="Limit the user to this org unit (code or id) and below.")
@click.pass_obj
def user_create(obj: Any, username: str, role: str, display_name: str, unit: str | None) -> None:
    """Create a user and print a one-time password."""
    with transaction(obj.session_factory()) as session:
        scope = _unit(session, unit)
        try:
            user, password = create_user(
                session,
                username=username,
                role=role,
                display_name=display_name,
                org_unit_id=scope.id if scope else None,
                actor=_actor(),
            )
        except UserError as exc:
            raise click.BadParameter(str(exc), param_hint=f"--{exc.field.replace('_', '-')}") from exc
        name = user.username
    _show_password(name, password)


@user_group.command("bootstrap")
@click.option("--name", "username", default="admin", show_default=True)
@click.pass_obj
def user_bootstrap(obj: Any, username: str) -> None:
    """Create the first administrator when there is no user yet (prints its one-time password once)."""
    with transaction(obj.session_factory()) as session:
        first = bootstrap_first_admin(session, username)
    if first is None:
        click.echo("users already exist; no administrator created")
        return
    _show_password(first.username, first.password)


@user_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def user_list(obj: Any, as_json: bool) -> None:
    """List users."""
    with transaction(obj.session_factory()) as session:
        for user in session.scalars(select(User).order_by(User.username)):
            record = {
                "username": user.username,
                "role": user.role,
                "org_unit_id": user.org_unit_id,
                "disabled": user.disabled,
                "totp": user.totp_enabled,
                "last_login": user.last_login_at.isoformat() if user.last_login_at else None,
            }
            if as_json:
                click.echo(json.dumps(record, ensure_ascii=False))
            else:
                state = "disabled" if user.disabled else "active"
                totp = "on" if user.totp_enabled else "off"
                click.echo(f"{user.username:<24} {user.role:<9} {state:<8} totp={totp}")


def _user_command(action: str) -> Any:
    def run(obj: Any, username: str) -> None:
        with transaction(obj.session_factory()) as session:
            user = _user(session, username)
            try:
                if action == "disable":
                    disable_user(session, user, actor=_actor())
                elif action == "enable":
                    enable_user(session, user, actor=_actor())
                elif action == "reset-totp":
                    reset_second_factor(session, user, actor=_actor())
                elif action == "unlock":
                    unlock_user(session, user, actor=_actor())
                else:
                    _user_obj, password = reset_password(session, user, actor=_actor())
            except UserError as exc:
                raise click.ClickException(str(exc)) from exc
        if action == "reset-password":
            _show_password(username, password)
        else:
            click.echo(f"{action}: {username} done")

    return run


for _action, _help in (
    ("disable", "Disable a user; every session of theirs ends at once."),
    ("enable", "Enable a disabled user."),
    ("reset-password", "Give a user a new one-time password (printed once)."),
    ("reset-totp", "Forget a user's authenticator (lost phone); they enroll again at sign-in."),
    ("unlock", "Lift the sign-in lock of a user after repeated wrong passwords."),
):
    user_group.command(_action, help=_help)(
        click.argument("username")(click.pass_obj(_user_command(_action)))
    )


# -- hikeshi token ----------------------------------------------------------------------------------


@click.group("token")
def token_group() -> None:
    """REST API tokens."""


@token_group.command("create")
@click.option("--name", required=True, help="What uses the token (e.g. 'dispatch center').")
@click.option("--role", required=True, type=click.Choice([r.value for r in TOKEN_ROLES]))
@click.option("--unit", default=None, help="Limit the token to this org unit (code or id) and below.")
@click.option(
    "--days", default=90, show_default=True, type=click.IntRange(1, 730), help="Days until it expires."
)
@click.option("--owner", default=None, help="USERNAME of the person the token answers for.")
@click.option(
    "--service-account",
    default=None,
    help="Or the name of the system it is for (e.g. dispatch-center); never requests or approves a wipe.",
)
@click.pass_obj
def token_create(
    obj: Any,
    name: str,
    role: str,
    unit: str | None,
    days: int,
    owner: str | None,
    service_account: str | None,
) -> None:
    """Create an API token for a person (--owner) or a service account, and print it (shown once)."""
    if (owner is None) == (service_account is None):
        raise click.UsageError("give exactly one of --owner USERNAME or --service-account NAME")
    with transaction(obj.session_factory()) as session:
        scope = _unit(session, unit)
        try:
            token, text = create_api_token(
                session,
                name=name,
                role=role,
                org_unit_id=scope.id if scope else None,
                expires_at=clock.now() + timedelta(days=days),
                actor=_actor(),
                owner=_user(session, owner) if owner is not None else None,
                service_account=service_account,
            )
        except ApiTokenError as exc:
            raise click.BadParameter(str(exc), param_hint=exc.field) from exc
        public_id, expires = token.public_id, token.expires_at
    click.echo(text)
    click.echo(f"token {public_id} ({role}) expires {expires:%Y-%m-%d}; it is shown only now", err=True)


@token_group.command("revoke")
@click.argument("token_id")
@click.pass_obj
def token_revoke(obj: Any, token_id: str) -> None:
    """Revoke an API token by its id (the part after `hks_`)."""
    with transaction(obj.session_factory()) as session:
        token = find_api_token(session, token_id.removeprefix("hks_").split("_")[0])
        if token is None:
            raise click.ClickException(f"no API token {token_id}")
        revoke_api_token(session, token, actor=_actor())
    click.echo(f"revoked {token_id}")


def _owner_label(session: Session, token: ApiToken) -> str:
    if token.service_account is not None:
        return f"service account {token.service_account}"
    owner = session.get(User, token.owner_user_id) if token.owner_user_id is not None else None
    return f"owner {owner.username}" if owner is not None else "owner removed"


@token_group.command("list")
@click.pass_obj
def token_list(obj: Any) -> None:
    """List API tokens (never their secrets)."""
    now = clock.now()
    with transaction(obj.session_factory()) as session:
        for token in session.scalars(select(ApiToken).order_by(ApiToken.id)):
            state = "revoked" if token.revoked_at else ("expired" if token.expires_at <= now else "active")
            click.echo(
                f"{token.public_id}  {token.role:<9} {state:<8} {token.expires_at:%Y-%m-%d}  {token.name}"
                f"  ({_owner_label(session, token)})"
            )


# -- hikeshi audit purge ----------------------------------------------------------------------------


@click.command("purge")
@click.option(
    "--days", type=click.IntRange(min=1), default=None, help="Keep this many days (default: setting)."
)
@click.pass_obj
def audit_purge(obj: Any, days: int | None) -> None:
    """Delete events older than the retention period, leaving a chained purge record."""
    keep = days if days is not None else obj.settings.audit_retention_days
    if not keep:
        click.echo("audit retention is 0 (keep forever): nothing purged")
        return
    try:
        with transaction(obj.session_factory()) as session:
            event = purge_audit(session, clock.now() - timedelta(days=keep), _actor())
            summary = dict(event.details) if event is not None else None
    except AuditChainBroken as exc:
        click.echo(f"refused: {exc}; run `hikeshi audit verify` and investigate first", err=True)
        sys.exit(1)
    if summary is None:
        click.echo(f"no events older than {keep} days")
        return
    click.echo(f"purged {summary['purged_events']} events up to seq {summary['up_to_seq']}")


COMMANDS = (user_group, token_group)
AUDIT_COMMANDS = (audit_purge,)
