"""`hikeshi push-cert`: request, decrypt, import and show the APNs push certificate."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Any

import click

from mdm.ground.audit import Actor
from mdm.ground.db import transaction

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def cli_actor() -> Actor:
    return Actor(f"cli:{getpass.getuser()}", "admin", "local")


@click.group("push-cert")
def push_cert() -> None:
    """APNs push certificate."""


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


@push_cert.command("request")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the files to send (never holds the private key).",
)
@click.option(
    "--vendor-cert", type=_FILE, help="MDM vendor certificate with its chain to Apple's root (PEM)."
)
@click.option("--vendor-key", type=_FILE, help="The MDM vendor certificate's private key (PEM).")
@click.option("--vendor-key-password", default=None, help="Password of an encrypted --vendor-key.")
@click.option(
    "--community", is_flag=True, help="No vendor certificate: prepare for a community signing service."
)
@click.option("--email", default=None, help="Contact e-mail written into the CSR.")
@click.pass_obj
def push_cert_request(
    ctx: Any,
    out_dir: Path,
    vendor_cert: Path | None,
    vendor_key: Path | None,
    vendor_key_password: str | None,
    community: bool,
    email: str | None,
) -> None:
    """Generate the push key (kept sealed here) and the request for Apple's portal."""
    from mdm.ground.push.certificates import active_push_certificate
    from mdm.services.push_cert_request import (
        PushRequestError,
        encryption_certificate,
        forget_request,
        instructions,
        new_request,
        vendor_signed_request,
    )

    if community == bool(vendor_cert or vendor_key):
        raise click.UsageError("give either --vendor-cert and --vendor-key, or --community")
    if not community and not (vendor_cert and vendor_key):
        raise click.UsageError("--vendor-cert and --vendor-key go together")
    settings = ctx.settings
    with transaction(ctx.session_factory()) as session:
        current = active_push_certificate(session)
        renews = current.topic if current else None
        try:
            pending = new_request(session, settings, actor=cli_actor(), email=email)
        except PushRequestError as exc:
            raise click.ClickException(str(exc)) from exc
        try:
            if vendor_cert and vendor_key:
                upload = vendor_signed_request(
                    pending,
                    vendor_cert.read_bytes(),
                    vendor_key.read_bytes(),
                    vendor_key_password.encode() if vendor_key_password else None,
                )
            else:
                encryption = encryption_certificate(settings, pending)
        except PushRequestError as exc:
            forget_request(settings, pending.key_id)
            raise click.ClickException(str(exc)) from exc
    _write(out_dir / "push-request.csr", pending.csr_pem)
    if vendor_cert:
        upload_file = out_dir / "push-request.b64"
        _write(upload_file, upload + b"\n")
        click.echo(f"wrote {out_dir / 'push-request.csr'} and {upload_file} (upload this one to Apple)")
    else:
        from cryptography.hazmat.primitives.serialization import Encoding

        upload_file = None
        _write(out_dir / "push-request-encryption.pem", encryption.public_bytes(Encoding.PEM))
        click.echo(f"wrote {out_dir / 'push-request.csr'} and {out_dir / 'push-request-encryption.pem'}")
    click.echo(f"key {pending.key_id[:16]}… kept sealed in the instance folder")
    click.echo(
        instructions(
            vendor_signed=bool(vendor_cert),
            upload_file=str(upload_file) if upload_file else None,
            renews_topic=renews,
        )
    )


@push_cert.command("decrypt")
@click.argument("path", type=_FILE)
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def push_cert_decrypt(ctx: Any, path: Path, out_file: Path) -> None:
    """Open a signing service's encrypted answer with the stored key: the file to upload to Apple."""
    from mdm.services.push_cert_request import PushRequestError, decrypt_signed_request

    try:
        upload, key_id = decrypt_signed_request(ctx.settings, path.read_bytes())
    except PushRequestError as exc:
        raise click.ClickException(f"{path}: {exc}") from exc
    _write(out_file, upload)
    click.echo(f"wrote {out_file}: upload it at identity.apple.com (request {key_id[:16]}…)")
    click.echo(
        "同じ Apple ID で更新し、新しい証明書を作成しないでください / "
        "renew with the same Apple ID, never create a new certificate"
    )


@push_cert.command("import")
@click.argument("path", type=_FILE)
@click.option("--password", default=None, help="Password of a PKCS#12 file or encrypted key.")
@click.option("--force", is_flag=True, help="Accept a different topic (orphans every enrolled device).")
@click.pass_obj
def push_cert_import(ctx: Any, path: Path, password: str | None, force: bool) -> None:
    """Import the push certificate: Apple's certificate alone (its key is the one requested
    here), or a PEM with its key, or PKCS#12."""
    from mdm.ground.push.certificates import (
        PushCertificateError,
        TopicChangeRefused,
        expiry_warning,
        import_push_certificate,
        read_push_certificate,
    )
    from mdm.services.push_cert_request import (
        PushRequestError,
        certificate_with_stored_key,
        forget_request,
        holds_certificate_only,
    )

    data = path.read_bytes()
    holds_key = not holds_certificate_only(data)
    pending: str | None = None
    try:
        with transaction(ctx.session_factory()) as session:
            if holds_key:
                loaded = read_push_certificate(data, password.encode() if password else None)
            else:
                loaded, pending = certificate_with_stored_key(session, ctx.settings, data)
            row = import_push_certificate(
                session, loaded, secret_key=ctx.settings.secret_key, actor=cli_actor(), force=force
            )
            topic, not_after = row.topic, row.not_after
            warning = expiry_warning(row)
    except TopicChangeRefused as exc:
        raise click.ClickException(f"refused: {exc}") from exc
    except (PushCertificateError, PushRequestError) as exc:
        raise click.ClickException(str(exc)) from exc
    if pending is not None:  # the key now lives sealed in the database
        forget_request(ctx.settings, pending)
    if force:
        click.echo(
            "WARNING: topic changed; every enrolled device must be re-enrolled to receive pushes.", err=True
        )
    click.echo(f"imported push certificate: topic {topic}, expires {not_after:%Y-%m-%d}")
    if warning:  # fewer than 30 days left: imported, but renew it soon
        click.echo(f"WARNING: {warning}", err=True)


@push_cert.command("show")
@click.pass_obj
def push_cert_show(ctx: Any) -> None:
    """Show the active push certificate, its topic and days left."""
    from mdm.ground.push.certificates import active_push_certificate, days_left, expiry_warning

    with transaction(ctx.session_factory()) as session:
        row = active_push_certificate(session)
        warning = expiry_warning(row)
        if row is not None:
            click.echo(f"topic:     {row.topic}")
            click.echo(f"subject:   {row.subject}")
            click.echo(f"expires:   {row.not_after:%Y-%m-%d %H:%M} UTC ({days_left(row)} days left)")
            click.echo(f"imported:  {row.imported_at:%Y-%m-%d %H:%M} UTC by {row.imported_by}")
            if row.last_error:
                click.echo(f"ALERT:     {row.last_error}")
    if warning:
        click.echo(f"WARNING: {warning}", err=True)
    if row is None:
        sys.exit(1)


COMMANDS = [push_cert]
