"""`hikeshi ade`: Automated Device Enrollment (Apple Business Manager)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mdm.ground.db import transaction
from mdm.roots.cli_push_cert import cli_actor
from mdm.roots.cli_token import moment, token_status

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

    token_status(
        ctx,
        active_server_token,
        "no ABM server token: run `hikeshi ade certificate` and `hikeshi ade upload-token`",
        lambda row: [
            ("server", f"{row.server_name or '?'} ({row.org_name or '?'})"),
            ("expires", moment(row.access_token_expiry)),
        ],
        expiry_warning,
    )


def _unit(session: Any, code: str) -> Any:
    from mdm.services.orgunits import find_unit_by_code

    unit = find_unit_by_code(session, code)
    if unit is None:
        raise click.ClickException(f"--unit: no org unit has the code {code!r}")
    return unit


@ade.command("sync")
@click.pass_obj
def ade_sync(ctx: Any) -> None:
    """Sync devices with ABM now and assign the units' ADE profiles."""
    from mdm.services.ade.client import DepError
    from mdm.services.ade.schedule import run_sync
    from mdm.services.ade.sync import NoServerToken

    try:
        result = run_sync(ctx.session_factory(), ctx.settings)
    except (DepError, NoServerToken) as exc:
        raise click.ClickException(f"sync failed: {exc}") from exc
    click.echo(" ".join(f"{k}={v}" for k, v in result.items()))


@ade.command("devices")
@click.pass_obj
def ade_devices(ctx: Any) -> None:
    """List the devices ABM assigned to this server."""
    from sqlalchemy import select

    from mdm.ground.models import AdeDevice, OrgUnit

    with transaction(ctx.session_factory()) as session:
        for row in session.scalars(select(AdeDevice).order_by(AdeDevice.serial_number)):
            unit = session.get(OrgUnit, row.org_unit_id) if row.org_unit_id else None
            state = "removed" if row.removed_at else (row.profile_status or "?")
            enrolled = f"device {row.device_id}" if row.device_id else "-"
            click.echo(
                f"{row.serial_number}\t{row.model or '?'}\t{state}\t"
                f"{unit.code or unit.name_ja if unit else '(no unit)'}\t{enrolled}"
            )


@ade.command("rule")
@click.argument("kind", type=click.Choice(["serial", "order", "default"]))
@click.argument("value", required=False, default="")
@click.option("--unit", "unit_code", required=True, help="Code of the org unit the devices are for.")
@click.pass_obj
def ade_rule(ctx: Any, kind: str, value: str, unit_code: str) -> None:
    """Place new ABM devices: by serial number, by order number, or by default."""
    from mdm.services.ade.units import AdeRuleError, add_rule

    try:
        with transaction(ctx.session_factory()) as session:
            add_rule(session, kind, value, _unit(session, unit_code), actor=cli_actor())
    except AdeRuleError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"rule saved: {kind} {value} -> {unit_code}")


@ade.command("place")
@click.argument("serial_number")
@click.option("--unit", "unit_code", required=True, help="Code of the org unit the tablet is for.")
@click.pass_obj
def ade_place(ctx: Any, serial_number: str, unit_code: str) -> None:
    """Put one ABM device in a unit by hand (its unit's ADE profile is assigned at the next sync)."""
    from sqlalchemy import func, select

    from mdm.ground.models import AdeDevice
    from mdm.services.ade.units import place_by_hand

    with transaction(ctx.session_factory()) as session:
        device = session.scalars(
            select(AdeDevice).where(func.upper(AdeDevice.serial_number) == serial_number.strip().upper())
        ).first()
        if device is None:
            raise click.ClickException(f"serial_number: no ABM device {serial_number!r} on this server")
        place_by_hand(session, device, _unit(session, unit_code), actor=cli_actor())
    click.echo(f"placed: {device.serial_number} -> {unit_code} (profile assigned at the next sync)")


@ade.command("import-order")
@click.argument("order_number")
@click.argument("path", type=_FILE)
@click.pass_obj
def ade_import_order(ctx: Any, order_number: str, path: Path) -> None:
    """Record the serial numbers (one a line, or CSV first column) delivered by an order."""
    from mdm.services.ade.units import AdeRuleError, import_order

    serials = [line.split(",")[0] for line in path.read_text(encoding="utf-8-sig").splitlines()]
    serials = [s for s in serials if s.strip() and s.strip().lower() not in ("serial", "serial_number")]
    try:
        with transaction(ctx.session_factory()) as session:
            count = import_order(session, order_number, serials, actor=cli_actor())
    except AdeRuleError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{count} serial numbers recorded for order {order_number}")


@ade.command("profile")
@click.option("--unit", "unit_code", required=True, help="Code of the org unit.")
@click.option("--department", default="", help="Shown on the Remote Management pane.")
@click.option("--support-phone", default="", help="Support phone shown on the Remote Management pane.")
@click.pass_obj
def ade_profile(ctx: Any, unit_code: str, department: str, support_phone: str) -> None:
    """Set a unit's ADE profile (defined and assigned in ABM at the next sync)."""
    from mdm.services.ade.profiles import AdeProfileError, save_profile

    try:
        with transaction(ctx.session_factory()) as session:
            save_profile(
                session,
                _unit(session, unit_code),
                {"department": department, "support_phone_number": support_phone},
                actor=cli_actor(),
            )
    except AdeProfileError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"ADE profile of {unit_code} saved; run `hikeshi ade sync` to send it to ABM")


COMMANDS = [ade]
