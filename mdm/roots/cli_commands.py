"""`hikeshi certificate`: export and verify wipe certificates (消去完了証明書).

Attached to the main command by mdm.roots.cli; the click context object (mdm.roots.cli's Context) gives
`.settings` and `.session_factory()`. Each command owns its transaction.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

import click
from cryptography import x509

from commands.wipe_certificate import (
    CertificateInvalid,
    certificate_for_incident,
    issue_wipe_certificate,
    render_certificate_html,
    verify_detached,
)
from mdm.ground.audit import Actor
from mdm.ground.db import transaction
from mdm.ground.models.incident import Incident


def _actor() -> Actor:
    return Actor(f"cli:{getpass.getuser()}", "admin", "local")


@click.group("certificate")
def certificate_group() -> None:
    """Wipe certificates (消去完了証明書): export and verify."""


def _trusted(obj: Any, ca_file: Path | None) -> list[x509.Certificate]:
    if ca_file is not None:
        return x509.load_pem_x509_certificates(ca_file.read_bytes())
    from mdm.ground.ca import builtin_device_cas

    with transaction(obj.session_factory()) as session:
        return builtin_device_cas(session, obj.settings)


@certificate_group.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("sigfile", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM CA certificate(s) to trust instead of the server's built-in CA.",
)
@click.pass_obj
def verify_command(obj: Any, file: Path, sigfile: Path, ca_file: Path | None) -> None:
    """Check that SIGFILE (DER CMS) is a valid signature of FILE by the server signing certificate."""
    trusted = _trusted(obj, ca_file)
    if not trusted:
        raise click.ClickException("no trusted CA: the built-in CA does not exist yet; pass --ca-file")
    try:
        result = verify_detached(file.read_bytes(), sigfile.read_bytes(), trusted)
    except CertificateInvalid as exc:
        raise click.ClickException(f"verification FAILED: {exc}") from exc
    signed = result.signed_at.isoformat() if result.signed_at else "unknown time"
    click.echo(f"OK: signed by {result.signer.subject.rfc4514_string()} at {signed}")


@certificate_group.command("export")
@click.argument("incident_id", type=int)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder for wipe-certificate-<id>.json, .json.p7s (DER) and .html.",
)
@click.pass_obj
def export_command(obj: Any, incident_id: int, out_dir: Path) -> None:
    """Write an incident's wipe certificate (signing it first if not yet signed)."""
    with transaction(obj.session_factory()) as session:
        incident = session.get(Incident, incident_id)
        if incident is None:
            raise click.BadParameter(f"no incident #{incident_id}", param_hint="INCIDENT_ID")
        row = certificate_for_incident(session, incident)
        if row is None:
            raise click.ClickException(
                f"incident #{incident_id} has no wipe certificate: the device has not confirmed a wipe"
            )
        row = issue_wipe_certificate(session, obj.settings, row, actor=_actor())
        content, signature, signer = row.content, row.signature or b"", row.signer_fingerprint
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / f"wipe-certificate-{incident_id}"
    json_path = base.with_suffix(".json")
    json_path.write_bytes(content)
    Path(f"{json_path}.p7s").write_bytes(signature)
    base.with_suffix(".html").write_text(
        render_certificate_html(content, signer_fingerprint=signer), encoding="utf-8"
    )
    click.echo(f"{json_path}\n{json_path}.p7s\n{base.with_suffix('.html')}")


COMMANDS = [certificate_group]
