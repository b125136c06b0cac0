"""`hikeshi ca`, `hikeshi enroll token` and `hikeshi units`: each command owns its transaction.

The groups are attached to the main command by mdm.roots.cli; the click context object (mdm.roots.cli's
Context) gives `.settings` and `.session_factory()`.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from enrollment import android_qr, qr, tokens
from enrollment.android_settings import effective_settings
from mdm.doors.android.sheet import PATH as ANDROID_PROVISIONING_PATH
from mdm.ground import ca as ca_service
from mdm.ground import clock
from mdm.ground.audit import Actor
from mdm.ground.db import transaction
from mdm.ground.models import OrgUnit, OrgUnitKind, TokenPlatform, UnitType
from mdm.services import orgunits
from mdm.services.unit_policy import POLICY_FIELDS, policy_input_problems, policy_layers, set_unit_policy


def _actor() -> Actor:
    return Actor(f"cli:{getpass.getuser()}", "admin", "local")


def _fields_message(fields: dict[str, Any]) -> str:
    return "; ".join(
        f"{name}: {' '.join(map(str, msgs)) if isinstance(msgs, list) else msgs}"
        for name, msgs in fields.items()
    )


def _resolve_unit(session: Session, reference: str, option: str = "--unit") -> OrgUnit:
    unit = orgunits.find_unit_by_code(session, reference)
    if unit is None and reference.lstrip("#").isdigit():
        unit = orgunits.get_unit(session, int(reference.lstrip("#")))
    if unit is None:
        raise click.BadParameter(f"no org unit with code or id {reference!r}", param_hint=option)
    return unit


# -- hikeshi ca -----------------------------------------------------------------------------------


@click.group("ca")
def ca_group() -> None:
    """The built-in certificate authority for device identities."""


def _colon_hex(hex_digest: str) -> str:
    return ":".join(hex_digest[i : i + 2] for i in range(0, len(hex_digest), 2)).upper()


@ca_group.command("show")
@click.pass_obj
def ca_show(obj: Any) -> None:
    """Print the CA's subject, SHA-256 fingerprint and expiry (and the profile signer's)."""
    with transaction(obj.session_factory()) as session:
        summaries = ca_service.ca_summary(session)
    if not summaries:
        click.echo(
            "no CA yet: it is created when the server first starts (or run `hikeshi ca init`)", err=True
        )
        sys.exit(1)
    now = clock.now()
    for item in summaries:
        label = "device CA" if item.purpose == "device-ca" else "profile signer"
        click.echo(f"{label}:")
        click.echo(f"  subject:     {item.subject}")
        click.echo(f"  sha256:      {_colon_hex(item.fingerprint_sha256)}")
        click.echo(f"  valid from:  {item.not_before:%Y-%m-%d %H:%M} UTC")
        click.echo(
            f"  expires:     {item.not_after:%Y-%m-%d %H:%M} UTC ({(item.not_after - now).days} days left)"
        )


@ca_group.command("init")
@click.pass_obj
def ca_init(obj: Any) -> None:
    """Create the CA and the profile signer now, if they do not exist yet."""
    factory = obj.session_factory()
    try:
        with transaction(factory) as session:
            created = ca_service.ensure_ca(session, obj.settings, actor=_actor())
    except IntegrityError:
        created = []  # another process created them at the same moment
    click.echo("created: " + ", ".join(created) if created else "the CA already exists")


# -- hikeshi enroll token -------------------------------------------------------------------------


@click.group("enroll")
def enroll_group() -> None:
    """Enrollment by QR code."""


@enroll_group.group("token")
def token_group() -> None:
    """Enrollment tokens (one QR code each)."""


@token_group.command("create")
@click.option("--unit", "unit_ref", required=True, help="Code (or id) of the org unit devices join.")
@click.option("--uses", default=1, show_default=True, type=int, help="How many devices may enroll with it.")
@click.option("--expires", default="7d", show_default=True, help="Lifetime: 90m, 12h, 7d, 2w.")
@click.option(
    "--platform", type=click.Choice(TokenPlatform.ALL), default=TokenPlatform.APPLE, show_default=True
)
@click.option("--note", default=None, help="Shown on the sheet and in lists.")
@click.option(
    "--qr-png",
    "qr_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the QR code here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def token_create(
    obj: Any,
    unit_ref: str,
    uses: int,
    expires: str,
    platform: str,
    note: str | None,
    qr_path: Path | None,
    as_json: bool,
) -> None:
    """Create a token; its URL is shown once (only a hash is stored).

    An android token has no enrollment URL: the tablet scans the device-owner provisioning QR
    code, printed from its sheet (/android/provisioning/<secret>/sheet) or written by --qr-png.
    """
    try:
        lifetime = tokens.parse_duration(expires)
    except tokens.TokenError as exc:
        raise click.BadParameter(_fields_message(exc.fields), param_hint="--expires") from exc
    android = platform == TokenPlatform.ANDROID
    conf = obj.settings
    if android:
        with obj.session_factory()() as session:
            # What the console stored wins over the environment (enrollment.android_settings).
            conf = effective_settings(session, obj.settings)
    missing = _android_settings_missing(conf) if android else {}
    if missing:
        # Refused before the token exists: a token whose QR code cannot be made is of no use.
        raise click.ClickException(
            "no Android token was made: the provisioning QR code cannot be made; set (in the console's "
            "settings or the environment) " + _fields_message(missing)
        )
    if qr_path is not None:
        _check_writable(qr_path)
    with transaction(obj.session_factory()) as session:
        unit = _resolve_unit(session, unit_ref)
        try:
            created = tokens.create_token(
                session,
                {
                    "org_unit_id": unit.id,
                    "platform": platform,
                    "max_uses": uses,
                    "expires_in": lifetime,
                    "note": note,
                },
                actor=_actor(),
            )
        except tokens.TokenError as exc:
            raise click.ClickException(_fields_message(exc.fields)) from exc
        token = created.token
        record: dict[str, object] = {
            "id": token.id,
            "unit": unit.code or unit.id,
            "unit_name": orgunits.path_label(session, unit),
            "platform": token.platform,
            "max_uses": token.max_uses,
            "expires_at": token.expires_at.isoformat(),
        }
        url: str | None = None
        if android:
            base = _android_provisioning_url(obj.settings, created.secret)
            # The QR code carries the secret: there is no URL a tablet opens, only the sheet.
            record |= {"url": None, "sheet_url": base + "/sheet", "qr_png_url": base + "/qr.png"}
        else:
            url = created.url(obj.settings)
            record |= {"url": url, "sheet_url": url + "/sheet", "qr_png_url": url + "/qr.png"}
        if qr_path is not None:
            # Written before the token commits: if the file cannot be written, no token exists.
            png = android_qr.qr_png(conf, created.secret) if url is None else qr.qr_png(url)
            try:
                qr_path.write_bytes(png)
            except OSError as exc:
                raise click.ClickException(
                    f"cannot write the QR code to {qr_path}: {exc.strerror}; no token was created"
                ) from exc
    if as_json:
        click.echo(json.dumps(record, ensure_ascii=False))
        return
    click.echo(f"token #{record['id']} for {record['unit_name']} ({token.platform}, {token.max_uses} uses)")
    click.echo(f"expires:  {token.expires_at:%Y-%m-%d %H:%M} UTC")
    if record["url"]:
        click.echo(f"URL:      {record['url']}")
    click.echo(f"sheet:    {record['sheet_url']}")
    if qr_path is not None:
        click.echo(f"QR code:  {qr_path}")
    elif android:
        click.echo(f"QR code:  {record['qr_png_url']}")
    shown = "The sheet address" if android else "The URL"
    click.echo(f"{shown} is shown only now; print the sheet or keep the QR code before closing this window.")


def _check_writable(path: Path) -> None:
    """Refuse an output path that cannot be written, before anything is created."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise click.ClickException(f"cannot write the QR code to {path}: the folder {folder} does not exist")
    if path.is_dir() or not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise click.ClickException(f"cannot write the QR code to {path}: not writable")


def _android_provisioning_url(settings: Any, secret: str) -> str:
    return settings.public_url.rstrip("/") + ANDROID_PROVISIONING_PATH.replace("<secret>", secret)


def _android_settings_missing(settings: Any) -> dict[str, str]:
    """The settings the provisioning QR code still needs (empty when it can be made)."""
    try:
        android_qr.provisioning_payload(settings, "check")
    except android_qr.ProvisioningNotConfigured as exc:
        return exc.settings
    return {}


@token_group.command("list")
@click.option("--unit", "unit_ref", default=None, help="Only this unit and the units below it.")
@click.option("--active", "active_only", is_flag=True, help="Only tokens that can still enroll.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def token_list(obj: Any, unit_ref: str | None, active_only: bool, as_json: bool) -> None:
    """List tokens, newest first."""
    with transaction(obj.session_factory()) as session:
        ids = None
        if unit_ref is not None:
            ids = orgunits.subtree_ids(session, _resolve_unit(session, unit_ref).id)
        rows = tokens.list_tokens(session, org_unit_ids=ids, include_inactive=not active_only)
        now = clock.now()
        for t in rows:
            record = {
                "id": t.id,
                "unit": t.org_unit.code or t.org_unit_id,
                "unit_name": t.org_unit.name_ja,
                "platform": t.platform,
                "uses": t.use_count,
                "max_uses": t.max_uses,
                "expires_at": t.expires_at.isoformat(),
                "state": tokens.token_state(t, now),
                "note": t.note,
            }
            if as_json:
                click.echo(json.dumps(record, ensure_ascii=False))
            else:
                click.echo(
                    f"#{t.id:<5} {record['unit']!s:<10} {t.org_unit.name_ja:<16} {t.platform:<8} "
                    f"{t.use_count:>4}/{t.max_uses:<4} {t.expires_at:%Y-%m-%d %H:%M}  {record['state']}"
                )
        if not rows and not as_json:
            click.echo("no enrollment tokens")


@token_group.command("revoke")
@click.argument("token_id", type=int)
@click.option("--reason", default=None, help="Recorded in the audit trail.")
@click.pass_obj
def token_revoke(obj: Any, token_id: int, reason: str | None) -> None:
    """Revoke token TOKEN_ID at once."""
    with transaction(obj.session_factory()) as session:
        token = tokens.get_token(session, token_id)
        if token is None:
            raise click.ClickException(f"no enrollment token #{token_id}")
        tokens.revoke_token(session, token, actor=_actor(), reason=reason)
    click.echo(f"revoked token #{token_id}")


# -- hikeshi units --------------------------------------------------------------------------------


@click.group("units")
def units_group() -> None:
    """The organisation tree: 消防本部 (hq) → 消防署 (station) → 出張所 (branch) → 隊 (unit)."""


@units_group.command("create")
@click.option("--kind", type=click.Choice(OrgUnitKind.ALL), required=True)
@click.option("--name-ja", required=True, help="Japanese name, e.g. 中央消防署.")
@click.option("--name-en", default=None)
@click.option("--code", default=None, help="Short unique code, e.g. ST01.")
@click.option("--parent", "parent_ref", default=None, help="Code (or id) of the parent unit.")
@click.option("--unit-type", type=click.Choice(UnitType.ALL), default=None, help="For a 隊: its kind.")
@click.pass_obj
def units_create(
    obj: Any,
    kind: str,
    name_ja: str,
    name_en: str | None,
    code: str | None,
    parent_ref: str | None,
    unit_type: str | None,
) -> None:
    """Create an org unit."""
    with transaction(obj.session_factory()) as session:
        parent = _resolve_unit(session, parent_ref, "--parent") if parent_ref else None
        try:
            unit = orgunits.create_unit(
                session,
                {
                    "kind": kind,
                    "name_ja": name_ja,
                    "name_en": name_en,
                    "code": code,
                    "unit_type": unit_type,
                    "parent_id": parent.id if parent else None,
                },
                actor=_actor(),
            )
        except orgunits.OrgUnitError as exc:
            raise click.ClickException(_fields_message(exc.fields)) from exc
        label = orgunits.path_label(session, unit)
        unit_id = unit.id
    click.echo(f"created #{unit_id} {label}")


@units_group.command("rename")
@click.argument("unit_ref")
@click.option("--name-ja", default=None)
@click.option("--name-en", default=None, help="Empty string clears it.")
@click.pass_obj
def units_rename(obj: Any, unit_ref: str, name_ja: str | None, name_en: str | None) -> None:
    """Rename UNIT (code or id)."""
    if name_ja is None and name_en is None:
        raise click.UsageError("give --name-ja and/or --name-en")
    with transaction(obj.session_factory()) as session:
        unit = _resolve_unit(session, unit_ref, "UNIT")
        kwargs: dict[str, Any] = {}
        if name_en is not None:
            kwargs["name_en"] = name_en or None
        try:
            orgunits.rename_unit(session, unit, name_ja=name_ja, actor=_actor(), **kwargs)
        except orgunits.OrgUnitError as exc:
            raise click.ClickException(_fields_message(exc.fields)) from exc
        label = orgunits.path_label(session, unit)
    click.echo(f"renamed: {label}")


@units_group.command("move")
@click.argument("unit_ref")
@click.option("--parent", "parent_ref", default=None, help="Code (or id) of the new parent.")
@click.option("--root", is_flag=True, help="Make it a root (only a 消防本部).")
@click.pass_obj
def units_move(obj: Any, unit_ref: str, parent_ref: str | None, root: bool) -> None:
    """Move UNIT (and everything below it) under another parent."""
    if (parent_ref is None) == (not root):
        raise click.UsageError("give exactly one of --parent or --root")
    with transaction(obj.session_factory()) as session:
        unit = _resolve_unit(session, unit_ref, "UNIT")
        parent = None if root else _resolve_unit(session, parent_ref or "", "--parent")
        try:
            orgunits.move_unit(session, unit, parent, actor=_actor())
        except orgunits.OrgUnitError as exc:
            raise click.ClickException(_fields_message(exc.fields)) from exc
        label = orgunits.path_label(session, unit)
    click.echo(f"moved: {label}")


@units_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def units_list(obj: Any, as_json: bool) -> None:
    """Show the tree."""
    with transaction(obj.session_factory()) as session:
        nodes = orgunits.walk(orgunits.unit_tree(session))
        for node in nodes:
            u = node.unit
            if as_json:
                click.echo(
                    json.dumps(
                        {
                            "id": u.id,
                            "parent_id": u.parent_id,
                            "kind": u.kind,
                            "unit_type": u.unit_type,
                            "code": u.code,
                            "name_ja": u.name_ja,
                            "name_en": u.name_en,
                            "devices": node.device_count,
                        },
                        ensure_ascii=False,
                    )
                )
            else:
                en = f" ({u.name_en})" if u.name_en else ""
                code = f"[{u.code}] " if u.code else ""
                kind = OrgUnitKind.LABELS[u.kind][0]
                click.echo(
                    f"{'  ' * node.depth}{code}{u.name_ja}{en}  {kind} #{u.id}  devices: {node.device_count}"
                )
        if not nodes and not as_json:
            click.echo("no org units")


# -- hikeshi units compliance-policy (issue #15 item 9) ----------------------------------------------


def _hours_or_days(maximum: int) -> click.IntRange:
    return click.IntRange(1, maximum)


@units_group.command("compliance-policy")
@click.argument("unit_ref", required=False)
@click.option("--default", "fleet_default", is_flag=True, help="The fleet default row instead of a unit.")
@click.option("--minimum-os", default=None, help="Oldest iOS/iPadOS version accepted, e.g. 17.4.")
@click.option("--offline-limit-hours", type=_hours_or_days(8760), default=None)
@click.option("--require-supervision/--no-require-supervision", default=None)
@click.option("--inventory-interval-hours", type=_hours_or_days(8760), default=None)
@click.option("--certificate-warning-days", type=_hours_or_days(3650), default=None)
@click.option("--minimum-android-patch", default=None, help="Oldest Android patch level, YYYY-MM-DD.")
@click.option(
    "--inherit",
    "inherit",
    multiple=True,
    type=click.Choice(POLICY_FIELDS),
    help="Drop the unit's own value of FIELD so it inherits again (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print own, inherited and effective values as JSON.")
@click.pass_obj
def units_compliance_policy(
    obj: Any,
    unit_ref: str | None,
    fleet_default: bool,
    minimum_os: str | None,
    offline_limit_hours: int | None,
    require_supervision: bool | None,
    inventory_interval_hours: int | None,
    certificate_warning_days: int | None,
    minimum_android_patch: str | None,
    inherit: tuple[str, ...],
    as_json: bool,
) -> None:
    """Show or change the compliance rules behind alerts of UNIT (code or id), or --default.

    With no change options it prints the policy that applies."""
    if (unit_ref is None) == (not fleet_default):
        raise click.UsageError("give exactly one of UNIT or --default")
    given = {
        "minimum_os_version": minimum_os,
        "offline_limit_hours": offline_limit_hours,
        "require_supervision": require_supervision,
        "inventory_interval_hours": inventory_interval_hours,
        "certificate_warning_days": certificate_warning_days,
        "minimum_android_security_patch": minimum_android_patch,
    }
    values: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
    clash = sorted(set(values) & set(inherit))
    if clash:
        raise click.UsageError(f"{', '.join(clash)}: give a value or --inherit, not both")
    values.update(dict.fromkeys(inherit))
    problems = policy_input_problems(values)
    if problems:
        raise click.ClickException(_fields_message(problems))
    with transaction(obj.session_factory()) as session:
        unit_id = None if fleet_default else _resolve_unit(session, unit_ref or "", "UNIT").id
        if values:
            set_unit_policy(session, _actor(), unit_id, **values)
        layers = policy_layers(
            session, unit_id, default_inventory_interval_hours=obj.settings.inventory_interval_hours
        )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "org_unit_id": unit_id,
                    "own": layers.own,
                    "inherited": asdict(layers.inherited),
                    "effective": asdict(layers.effective),
                },
                ensure_ascii=False,
            )
        )
        return
    if values:
        click.echo("saved")
    click.echo(f"compliance policy of {'the fleet default' if unit_id is None else f'unit #{unit_id}'}:")
    for name in POLICY_FIELDS:
        own = layers.own[name]
        source = "own" if own is not None else "inherited"
        click.echo(f"  {name}: {_shown(getattr(layers.effective, name))} ({source})")


def _shown(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


COMMANDS = (ca_group, enroll_group, units_group)
