"""`hikeshi vpp`: the Apps and Books (volume purchase) location token, its apps and licenses."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground.db import transaction
from mdm.roots.cli_push_cert import cli_actor
from mdm.roots.cli_token import moment, token_status

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group("vpp")
def vpp() -> None:
    """Apps and Books (volume purchase): the location token, apps and device licenses."""


@vpp.command("upload-token")
@click.argument("path", type=_FILE)
@click.option("--no-sync", is_flag=True, help="Store the token without asking the service now.")
@click.pass_obj
def vpp_upload_token(ctx: Any, path: Path, no_sync: bool) -> None:
    """Store the content token (.vpptoken) downloaded from Apple Business Manager, then sync."""
    from mdm.services.vpp.client import VppError
    from mdm.services.vpp.schedule import run_sync
    from mdm.services.vpp.token import VppTokenFileError, expiry_warning, store_token

    try:
        with transaction(ctx.session_factory()) as session:
            row = store_token(session, ctx.settings, path.read_bytes(), actor=cli_actor())
            org, expiry = row.org_name, row.expires_at
    except VppTokenFileError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"content token of {org} stored; expires {expiry:%Y-%m-%d %H:%M} UTC")
    if no_sync:
        return
    try:
        result = run_sync(ctx.session_factory(), ctx.settings)
    except VppError as exc:
        raise click.ClickException(f"stored, but the first sync failed: {exc}") from exc
    click.echo(f"location: {result['location'] or '?'}; {result['assets']} apps")
    with transaction(ctx.session_factory()) as session:
        from mdm.services.vpp.token import active_token

        warning = expiry_warning(active_token(session))
    if warning:
        click.echo(f"WARNING: {warning.en}", err=True)


@vpp.command("sync")
@click.pass_obj
def vpp_sync(ctx: Any) -> None:
    """Sync the location, its apps and license counts, and pending assignments now."""
    from mdm.services.vpp.client import VppError
    from mdm.services.vpp.schedule import run_sync
    from mdm.services.vpp.sync import NoVppToken

    try:
        result = run_sync(ctx.session_factory(), ctx.settings)
    except (VppError, NoVppToken) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"location: {result['location'] or '?'}; {result['assets']} apps ({result['removed']} removed); "
        f"{result['events_completed']} of {result['events_checked']} pending events finished"
    )
    if result["location_changed"]:
        click.echo("WARNING: the token is for another location than the one it replaced", err=True)


@vpp.command("status")
@click.pass_obj
def vpp_status(ctx: Any) -> None:
    """The token (never its secret), its location and expiry, and the apps with their counts."""
    from mdm.ground.models import VppAsset
    from mdm.services.vpp.token import active_token, expiry_warning

    def apps(session: Session) -> None:
        click.echo("adamId        pricing  total  assigned  available")
        for asset in session.scalars(select(VppAsset).order_by(VppAsset.adam_id)):
            click.echo(
                f"{asset.adam_id:<13} {asset.pricing_param:<8} {asset.total_count:>5}  "
                f"{asset.assigned_count:>8}  {asset.available_count:>9}"
            )

    warning = token_status(
        ctx,
        active_token,
        "no Apps and Books content token: run `hikeshi vpp upload-token FILE.vpptoken`",
        lambda row: [
            ("organisation", row.org_name),
            ("location", row.location_name or "unknown until the first sync"),
            ("expires", moment(row.expires_at)),
        ],
        expiry_warning,
        error_label="last error",
        then=apps,
    )
    if warning and warning.level == "error":
        sys.exit(1)


COMMANDS = [vpp]
