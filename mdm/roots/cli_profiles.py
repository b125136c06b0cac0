"""`hikeshi profile ...`: create, update, list, validate, preview, assign, unassign and export profiles.

Each command owns its transaction. A profile is named by its identifier or its numeric id; a unit
by its code or id. Refusals name the field and exit non-zero without writing anything.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Any

import click
from marshmallow import ValidationError
from sqlalchemy.orm import Session

from mdm.ground.audit import Actor
from mdm.ground.ca import CANotReady
from mdm.ground.db import transaction
from mdm.ground.models import OrgUnit, Profile
from mdm.services import orgunits
from profiles.assignment import (
    ReconcileSummary,
    assign_profile,
    list_assignments,
    unassign_profile,
    update_profile_and_apply,
)
from profiles.export import export_profile
from profiles.rendering import ANDROID, APPLE, PLATFORMS, RenderError
from profiles.service import (
    create_profile_from_template,
    get_profile,
    get_profile_by_identifier,
    list_profiles,
    preview_profile,
)
from profiles.signing import server_render_context
from profiles.spec import validate_spec
from profiles.templates import list_templates

# Time the CLI waits for the pushes of an assignment to leave before it exits.
PUSH_WAIT_SECONDS = 30.0


def _actor() -> Actor:
    return Actor(f"cli:{getpass.getuser()}", "admin", "local")


def _messages(messages: Any) -> str:
    return json.dumps(messages, ensure_ascii=False, sort_keys=True)


def _resolve_profile(session: Session, reference: str) -> Profile:
    profile = get_profile_by_identifier(session, reference)
    if profile is None and reference.lstrip("#").isdigit():
        profile = get_profile(session, int(reference.lstrip("#")))
    if profile is None:
        raise click.BadParameter(f"no profile with identifier or id {reference!r}", param_hint="ID")
    return profile


def _resolve_unit(session: Session, reference: str) -> OrgUnit:
    unit = orgunits.find_unit_by_code(session, reference)
    if unit is None and reference.lstrip("#").isdigit():
        unit = orgunits.get_unit(session, int(reference.lstrip("#")))
    if unit is None:
        raise click.BadParameter(f"no org unit with code or id {reference!r}", param_hint="--unit")
    return unit


@click.group("profile")
def profile_group() -> None:
    """Configuration profiles: templates, validation, preview, assignment to org units."""


@profile_group.command("create")
@click.option("--template", "slug", help="Start from a built-in template (see `profile templates`).")
@click.option(
    "--spec",
    "spec_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A profile spec as JSON.",
)
@click.option("--identifier", help="Reverse-DNS identifier (required with --template).")
@click.option("--name-ja", default=None)
@click.option("--name-en", default=None)
@click.pass_obj
def create(
    obj: Any,
    slug: str | None,
    spec_file: Path | None,
    identifier: str | None,
    name_ja: str | None,
    name_en: str | None,
) -> None:
    """Create a profile from a template or a JSON spec; prints its id and identifier."""
    from profiles.service import create_profile

    if (slug is None) == (spec_file is None):
        raise click.UsageError("give exactly one of --template or --spec")
    try:
        with transaction(obj.session_factory()) as session:
            if slug is not None:
                if not identifier:
                    raise click.BadParameter("required with --template", param_hint="--identifier")
                profile = create_profile_from_template(
                    session,
                    _actor(),
                    slug,
                    identifier=identifier,
                    name_ja=name_ja,
                    name_en=name_en,
                    secret_key=obj.settings.secret_key,
                )
            else:
                assert spec_file is not None
                profile = create_profile(
                    session, _actor(), _read_json(spec_file), secret_key=obj.settings.secret_key
                )
            click.echo(f"{profile.id}\t{profile.identifier}\tv{profile.version}")
    except ValidationError as exc:
        raise click.ClickException(f"invalid profile: {_messages(exc.messages)}") from exc


@profile_group.command("update")
@click.argument("reference", metavar="ID")
@click.option(
    "--spec",
    "spec_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The whole new spec as JSON (same identifier).",
)
@click.pass_obj
def update(obj: Any, reference: str, spec_file: Path) -> None:
    """Save a new version of a profile; devices that have it get it installed again (pushed)."""
    spec = _read_json(spec_file)
    try:
        with transaction(obj.session_factory()) as session:
            profile = _resolve_profile(session, reference)
            profile, summary = update_profile_and_apply(
                session, obj.settings, profile, spec, actor=_actor(), context=obj.commands
            )
            label = f"{profile.identifier} v{profile.version}"
        obj.dispatcher.wait_idle(PUSH_WAIT_SECONDS)
    except ValidationError as exc:
        raise click.ClickException(f"invalid profile: {_messages(exc.messages)}") from exc
    except (CANotReady, RenderError) as exc:
        raise click.ClickException(str(exc)) from exc
    if summary is None:
        click.echo(f"{label}: unchanged")
    else:
        click.echo(f"{label}: {summary.devices} devices, {len(summary.installs)} installs queued")


@profile_group.command("templates")
def templates() -> None:
    """The built-in templates."""
    for template in list_templates():
        click.echo(f"{template.slug}\t{template.name_ja}\t{template.name_en}")


@profile_group.command("list")
@click.pass_obj
def list_command(obj: Any) -> None:
    """Every profile with its version and the units it is assigned to."""
    with transaction(obj.session_factory()) as session:
        for profile in list_profiles(session):
            units = []
            for assignment in list_assignments(session, profile=profile):
                unit = orgunits.get_unit(session, assignment.org_unit_id)
                units.append(unit.code or str(unit.id) if unit is not None else str(assignment.org_unit_id))
            click.echo(
                f"{profile.id}\t{profile.identifier}\tv{profile.version}\t{profile.name_ja}\t"
                f"{','.join(units) or '-'}"
            )


@profile_group.command("validate")
@click.argument("spec_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def validate(spec_file: Path) -> None:
    """Check a JSON profile spec without storing it; names every bad field."""
    try:
        clean = validate_spec(_read_json(spec_file))
    except ValidationError as exc:
        raise click.ClickException(f"invalid profile: {_messages(exc.messages)}") from exc
    click.echo(f"ok: {clean['identifier']} ({len(clean['payloads'])} payloads)")


@profile_group.command("preview")
@click.argument("reference", metavar="ID")
@click.option("--platform", type=click.Choice(PLATFORMS), default=APPLE, show_default=True)
@click.pass_obj
def preview(obj: Any, reference: str, platform: str) -> None:
    """The rendered plist (Apple, unsigned) or policy JSON (Android); gaps go to stderr."""
    with transaction(obj.session_factory()) as session:
        profile = _resolve_profile(session, reference)
        result = _render(session, obj.settings, profile, platform)
    if platform == ANDROID:
        click.echo(json.dumps(result.content, ensure_ascii=False, indent=2, sort_keys=True))
    else:
        click.echo(result.content.decode("utf-8"), nl=False)
    for item in result.unsupported:
        click.echo(f"unsupported: {item['payload']}.{item['field']}: {item['reason']}", err=True)
    for item in result.notes:
        click.echo(f"note: {item['payload']}.{item['field']}: {item['note']}", err=True)


@profile_group.command("export")
@click.argument("reference", metavar="ID")
@click.option("--platform", type=click.Choice(PLATFORMS), default=APPLE, show_default=True)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file instead of stdout.",
)
@click.pass_obj
def export(obj: Any, reference: str, platform: str, out_path: Path | None) -> None:
    """Write the profile to --out FILE or stdout: a signed .mobileconfig (Apple, binary DER, never
    written to a terminal) or policy JSON (Android)."""
    if out_path is None and platform == APPLE and sys.stdout.isatty():
        raise click.ClickException(
            "a signed .mobileconfig is binary: give --out FILE (e.g. --out profile.mobileconfig) "
            "or redirect stdout"
        )
    if out_path is not None and not out_path.parent.is_dir():
        raise click.ClickException(f"cannot write {out_path}: the folder {out_path.parent} does not exist")
    with transaction(obj.session_factory()) as session:
        profile = _resolve_profile(session, reference)
        try:
            data = export_profile(session, obj.settings, profile, platform, actor=_actor()).data
        except (CANotReady, RenderError) as exc:
            raise click.ClickException(str(exc)) from exc
    if out_path is not None:
        try:
            out_path.write_bytes(data)
        except OSError as exc:
            raise click.ClickException(f"cannot write {out_path}: {exc.strerror}") from exc
        click.echo(f"wrote {out_path} ({len(data)} bytes)", err=True)
        return
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@profile_group.command("assign")
@click.argument("reference", metavar="ID")
@click.option("--unit", "unit_ref", required=True, help="Org unit code or id.")
@click.pass_obj
def assign(obj: Any, reference: str, unit_ref: str) -> None:
    """Assign a profile to a unit and everything below it; installs are queued and pushed."""
    _change_assignment(obj, reference, unit_ref, assign=True)


@profile_group.command("unassign")
@click.argument("reference", metavar="ID")
@click.option("--unit", "unit_ref", required=True, help="Org unit code or id.")
@click.pass_obj
def unassign(obj: Any, reference: str, unit_ref: str) -> None:
    """Take a profile off a unit; devices no longer covered get it removed."""
    _change_assignment(obj, reference, unit_ref, assign=False)


def _change_assignment(obj: Any, reference: str, unit_ref: str, *, assign: bool) -> None:
    try:
        with transaction(obj.session_factory()) as session:
            profile = _resolve_profile(session, reference)
            unit = _resolve_unit(session, unit_ref)
            change = assign_profile if assign else unassign_profile
            summary: ReconcileSummary = change(session, obj.settings, profile, unit, actor=_actor())
            label = f"{profile.identifier} {'→' if assign else '✕'} {unit.code or unit.id}"
        obj.dispatcher.wait_idle(PUSH_WAIT_SECONDS)
    except ValidationError as exc:
        raise click.ClickException(_messages(exc.messages)) from exc
    except CANotReady as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"{label}: {summary.devices} devices, {len(summary.installs)} installs, "
        f"{len(summary.removals)} removals queued, {len(summary.cancelled)} undelivered installs cancelled"
    )


def _render(session: Session, settings: Any, profile: Profile, platform: str) -> Any:
    """A preview: secrets shown as ******** (only `export` carries them)."""
    try:
        return preview_profile(profile, server_render_context(session, settings))[platform]
    except (CANotReady, RenderError) as exc:
        raise click.ClickException(str(exc)) from exc


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.ClickException(f"{path}: not JSON: {exc}") from exc


COMMANDS = [profile_group]
