"""`hikeshi amapi`: the Android Management API binding and the AMAPI units' policies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from mdm.ground.db import transaction
from mdm.roots.cli_push_cert import cli_actor

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group("amapi")
def amapi() -> None:
    """Android Management API: the enterprise binding, its service account, unit policies."""


@amapi.command("status")
@click.pass_obj
def amapi_status(ctx: Any) -> None:
    """Where the binding stands (the service account by e-mail and key id, never its key)."""
    from mdm.services.amapi.enterprise import status
    from mdm.services.amapi.mode import amapi_unit_ids

    with transaction(ctx.session_factory()) as session:
        shown = status(session)
        shown["amapi_units"] = amapi_unit_ids(session)
    click.echo(json.dumps(shown, default=str, ensure_ascii=False, indent=2))


@amapi.command("upload-credential")
@click.argument("path", type=_FILE)
@click.pass_obj
def amapi_upload_credential(ctx: Any, path: Path) -> None:
    """Store the service account's JSON key file (checked, sealed)."""
    from mdm.services.amapi.credential import CredentialError, store_credential

    try:
        with transaction(ctx.session_factory()) as session:
            row = store_credential(session, ctx.settings, path.read_bytes(), actor=cli_actor())
            email, project = row.service_account_email, row.project_id
    except CredentialError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"service account {email} (project {project}) stored")


@amapi.command("sync-policies")
@click.pass_obj
def amapi_sync_policies(ctx: Any) -> None:
    """Patch every AMAPI unit's policy whose content changed (what the scheduler does each tick)."""
    from mdm.services.amapi.schedule import scheduled_policy_sync

    click.echo(json.dumps(scheduled_policy_sync(ctx.session_factory(), ctx.settings), default=str))


COMMANDS = [amapi]
