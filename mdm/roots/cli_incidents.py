"""`hikeshi incident request-wipe`: the command line asks for a wipe like anyone else.

Whoever runs the CLI has the server's database, but the two-person rule compares people: the
command names the person acting with `--as USERNAME` (an existing, enabled user whose role may
request a wipe, or an administrator for `--break-glass`), and the audit trail records both that
person and the operating-system account. A second person approves in the console or the API.

Attached to the main command by mdm.roots.cli (`COMMANDS`); each command owns its transaction.
"""

from __future__ import annotations

import getpass
from typing import Any

import click

import commands.incidents as hotline
from mdm.ground.audit import Actor
from mdm.ground.db import transaction
from mdm.ground.models import User
from mdm.ground.models.incident import Incident
from web.auth.users import find_user_by_name
from web.rbac import Permission, permissions_of


def person_actor(user: User) -> Actor:
    """The person acting through the CLI, with the OS account that typed the command."""
    return Actor(f"user:{user.username} (cli:{getpass.getuser()})", user.role, "local", user_id=user.id)


def _person(session: Any, username: str, needed: Permission) -> User:
    user = find_user_by_name(session, username)
    if user is None or user.disabled:
        raise click.BadParameter(f"no enabled user named {username}", param_hint="--as")
    if needed not in permissions_of(user.role):
        raise click.BadParameter(
            f"{username} is {user.role}; that role lacks {needed.value}", param_hint="--as"
        )
    return user


@click.group("incident")
def incident_group() -> None:
    """Hotline incidents from the command line (wipe requests, break glass)."""


@incident_group.command("request-wipe")
@click.argument("incident_id", type=int)
@click.option("--as", "username", required=True, help="USERNAME of the person asking (recorded).")
@click.option("--reason", default=None, help="Why (required with --break-glass).")
@click.option(
    "--break-glass",
    is_flag=True,
    help="An administrator wipes alone, now: flagged red on the timeline and in the audit trail.",
)
@click.pass_obj
def request_wipe_command(
    obj: Any, incident_id: int, username: str, reason: str | None, break_glass: bool
) -> None:
    """Ask for a wipe of INCIDENT_ID's device; a different person approves it (console or API)."""
    needed = Permission.WIPE_BREAK_GLASS if break_glass else Permission.WIPE_REQUEST
    with transaction(obj.session_factory()) as session:
        actor = person_actor(_person(session, username, needed))
        incident = session.get(Incident, incident_id)
        if incident is None:
            raise click.BadParameter(f"no incident #{incident_id}", param_hint="INCIDENT_ID")
        try:
            if break_glass:
                command = hotline.break_glass_wipe(
                    session, incident, actor=actor, reason=reason, context=obj.commands
                )
                done = f"BREAK GLASS: EraseDevice {command.uuid} queued for incident #{incident_id}"
            else:
                hotline.request_wipe(session, incident, actor=actor, reason=reason)
                done = f"wipe requested for incident #{incident_id}; a different person must approve it"
        except hotline.IncidentError as exc:
            raise click.ClickException(f"{exc.field}: {exc}") from exc
    obj.dispatcher.wait_idle(60)
    click.echo(done)


COMMANDS = (incident_group,)
