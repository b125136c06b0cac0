"""`hikeshi ade`: Automated Device Enrollment (Apple Business Manager)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from mdm.ground.db import transaction
from mdm.roots.cli_push_cert import cli_actor

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group("ade")
def ade() -> None:
    """Automated Device Enrollment (Apple Business Manager)."""


@ade.command("certificate")
@click.option(
    "--out",
    "out_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the certificate (PEM) to upload to ABM.",
)
@click.option("--new", "new_key", is_flag=True, help="Make a new key pair (for a new MDM server in ABM).")
@click.pass_obj
def ade_certificate(ctx: Any, out_file: Path, new_key: bool) -> None:
    """Write the public-key certificate ABM encrypts the server token to."""
    from mdm.services.ade.server_token import new_token_key, token_key_certificate

    with transaction(ctx.session_factory()) as session:
        make = new_token_key if new_key else token_key_certificate
        row = make(session, ctx.settings, actor=cli_actor())
        pem = row.cert_pem
        fp = row.fingerprint_sha256
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(pem)
    click.echo(f"wrote {out_file} (SHA-256 {fp})")
    click.echo(
        "ABM: 環境設定 → MDM サーバ → 公開鍵をアップロード / Preferences → MDM server → upload public key"
    )


@ade.command("upload-token")
@click.argument("path", type=_FILE)
@click.pass_obj
def ade_upload_token(ctx: Any, path: Path) -> None:
    """Decrypt and store the server token (.p7m) downloaded from ABM."""
    from mdm.services.ade.server_token import ServerTokenError, expiry_warning, store_server_token

    try:
        with transaction(ctx.session_factory()) as session:
            row = store_server_token(session, ctx.settings, path.read_bytes(), actor=cli_actor())
            expiry = row.access_token_expiry
            warning = expiry_warning(row)
    except ServerTokenError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"server token stored; expires {expiry:%Y-%m-%d %H:%M} UTC")
    if warning:
        click.echo(f"WARNING: {warning.en}", err=True)


@ade.command("status")
@click.pass_obj
def ade_status(ctx: Any) -> None:
    """The server token, its expiry and the last sync."""
    from mdm.services.ade.server_token import active_server_token, expiry_warning

    with transaction(ctx.session_factory()) as session:
        row = active_server_token(session)
        if row is None:
            click.echo("no ABM server token: run `hikeshi ade certificate` and `hikeshi ade upload-token`")
            sys.exit(1)
        click.echo(f"server:    {row.server_name or '?'} ({row.org_name or '?'})")
        click.echo(f"expires:   {row.access_token_expiry:%Y-%m-%d %H:%M} UTC")
        click.echo(f"last sync: {f'{row.last_sync_at:%Y-%m-%d %H:%M} UTC' if row.last_sync_at else 'never'}")
        if row.last_error:
            click.echo(f"error:     {row.last_error}")
        warning = expiry_warning(row)
    if warning:
        click.echo(f"WARNING: {warning.en}", err=True)


COMMANDS = [ade]
