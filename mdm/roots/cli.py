"""The `hikeshi` command line. Each command is a boundary: it owns its transaction."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground.audit import Actor, verify_chain
from mdm.ground.audit_sealer import seal_all
from mdm.ground.config import BACKUP_PASSPHRASE, SCHEDULER_IN_SERVE, SECRET_KEY, Settings
from mdm.ground.db import (
    DatabaseBehind,
    ensure_migrated,
    make_engine,
    make_session_factory,
    transaction,
    upgrade_database,
)
from mdm.ground.logsetup import configure_logging
from mdm.roots.distribution import package_clash

if TYPE_CHECKING:
    from commands.context import CommandContext
    from mdm.ground.push.dispatcher import PushDispatcher
    from mdm.roots.wiring import Wiring
    from mdm.services.backup.crypto import BackupKey


def cli_actor() -> Actor:
    import getpass

    return Actor(f"cli:{getpass.getuser()}", "admin", "local")


class Context:
    """Lazily opened settings and database for a CLI invocation."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._factory: sessionmaker[Session] | None = None
        self._engine: Engine | None = None
        self._wiring: Wiring | None = None

    def close(self) -> None:
        """Post what the command's commits asked for, stop the push channels and give the pool's
        connections back when the command ends (tests run many in one process)."""
        if self._wiring is not None:
            self._wiring.close()
            self._wiring = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
            self._factory = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    def session_factory(self, *, check_migrations: bool = True) -> sessionmaker[Session]:
        if self._factory is None:
            engine = self._engine = make_engine(self.settings.database_url)
            if check_migrations:
                try:
                    ensure_migrated(engine)
                except DatabaseBehind as exc:
                    raise click.ClickException(str(exc)) from exc
            from mdm.roots.wiring import wire  # imports every service: not for `hikeshi --help`

            factory = make_session_factory(engine)
            # The app's wiring (mdm.roots.wiring): the same listeners and hooks as the server's.
            self._wiring = wire(factory, self.settings, seal_in_background=False)  # a CLI may exit at once
            self._factory = factory
        return self._factory

    @property
    def commands(self) -> CommandContext:
        """The commands' context the wiring built: passed to whatever queues a command."""
        self.session_factory()
        assert self._wiring is not None
        return self._wiring.commands

    @property
    def dispatcher(self) -> PushDispatcher:
        """Wakes the devices a command's commit queued commands for; closed with the context."""
        self.session_factory()
        assert self._wiring is not None and self._wiring.dispatcher is not None
        return self._wiring.dispatcher


pass_ctx = click.make_pass_decorator(Context, ensure=True)


class HikeshiGroup(click.Group):
    """Fails like a tool, not like a crash: a database that cannot be reached, a setting that is
    refused or an instance folder it cannot use is one line saying what is wrong and what to
    do, exit code 1 (mdm.roots.cli_errors)."""

    def invoke(self, ctx: click.Context) -> object:
        from mdm.roots.cli_errors import explain

        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            message = explain(exc, ctx.find_object(Context))
            if message is None:
                raise
            raise click.ClickException(message) from exc


@click.group(cls=HikeshiGroup)
@click.pass_context
def main(ctx: click.Context) -> None:
    """Hikeshi MDM: manage fire department field tablets."""
    problem = package_clash()  # `hikeshi` checks before this module's imports; this is for callers of main
    if problem is not None:
        raise click.ClickException(problem)
    configure_logging("WARNING", unless_configured=True)
    ctx.call_on_close(ctx.ensure_object(Context).close)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="Web worker processes.")
@click.option("--threads", default=16, show_default=True, type=int, help="Threads per worker.")
@click.option(
    "--scheduler/--no-scheduler",
    "with_scheduler",
    default=SCHEDULER_IN_SERVE.read,
    show_default="HIKESHI_SCHEDULER_IN_SERVE, else on",
    help="Run the periodic jobs in the server's master process (single machine); turn off where "
    "`hikeshi scheduler` runs on its own. Env: HIKESHI_SCHEDULER_IN_SERVE=0/1.",
)
@click.option(
    "--certfile", type=click.Path(exists=True, dir_okay=False), help="Serve HTTPS: certificate chain (PEM)."
)
@click.option(
    "--keyfile", type=click.Path(exists=True, dir_okay=False), help="The certificate's private key (PEM)."
)
@pass_ctx
def serve(
    ctx: Context,
    host: str,
    port: int,
    workers: int,
    threads: int,
    with_scheduler: bool,
    certfile: str | None,
    keyfile: str | None,
) -> None:
    """Run the server (gunicorn) on HOST:PORT, over HTTPS with --certfile and --keyfile."""
    from mdm.ground.transport import check_public_url, request_line_limit
    from mdm.roots.server import run_server, tls_files

    # Settings that make the server unsafe or unusable are refused before anything starts.
    for warning in check_public_url(ctx.settings):
        click.echo(f"WARNING: {warning}", err=True)
    request_line_limit(ctx.settings)
    ctx.session_factory()  # refuses a database behind its migrations, before anything starts
    tls = tls_files(certfile, keyfile)
    run_server(
        ctx.settings,
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        scheduler=with_scheduler,
        tls=tls,
    )


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(ctx: Context) -> None:
    """Apply every pending migration, naming each one applied."""
    applied = upgrade_database(ctx.settings.database_url, secret_key=ctx.settings.secret_key)
    for revision, title in applied:
        click.echo(f"applied migration {revision}: {title}")
    click.echo(
        f"database is up to date ({len(applied)} migrations applied)" if applied else "database is up to date"
    )


@main.group()
def devices() -> None:
    """Devices."""


@devices.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_ctx
def devices_list(ctx: Context, as_json: bool) -> None:
    """List devices."""
    from mdm.ground.models import Device

    with transaction(ctx.session_factory()) as session:
        rows = session.scalars(select(Device).order_by(Device.id)).all()
        for d in rows:
            record = {
                "id": d.id,
                "udid": d.udid,
                "serial": d.serial_number,
                "name": d.device_name,
                "model": d.product_name,
                "os": d.os_version,
                "state": d.enrollment_state,
                "last_seen": d.last_seen_at.isoformat() if d.last_seen_at else None,
                "asset_tag": d.asset_tag,
                "user": d.assigned_user,
            }
            if as_json:
                click.echo(json.dumps(record, ensure_ascii=False))
            else:
                click.echo(
                    f"{d.id:>5}  {d.udid or '-':<40} {d.serial_number or '-':<14} {d.asset_tag or '-':<12} "
                    f"{d.assigned_user or '-':<16} {d.enrollment_state:<10} {d.os_version or '-':<8} "
                    f"{record['last_seen'] or 'never'}"
                )
        if not rows and not as_json:
            click.echo("no devices")


@devices.command("label")
@click.argument("device_id", type=int)
@click.option("--asset-tag", help="資産番号 on HQ's sticker (unique); an empty string clears it.")
@click.option("--user", "assigned_user", help="Crew or person the tablet is issued to; empty clears it.")
@pass_ctx
def devices_label(ctx: Context, device_id: int, asset_tag: str | None, assigned_user: str | None) -> None:
    """Set the asset tag and/or user of device DEVICE_ID (audited)."""
    from mdm.ground.models import Device
    from mdm.services.device_labels import DeviceLabelsUpdateSchema, DuplicateAssetTag, set_device_labels

    given = {"asset_tag": asset_tag, "assigned_user": assigned_user}
    form = {name: value for name, value in given.items() if value is not None}
    if not form:
        raise click.UsageError("give --asset-tag and/or --user")
    schema = DeviceLabelsUpdateSchema()
    errors = schema.validate(form)
    if errors:
        raise click.ClickException(json.dumps(errors, ensure_ascii=False))
    with transaction(ctx.session_factory()) as session:
        device = session.get(Device, device_id)
        if device is None:
            raise click.ClickException(f"no device with id {device_id}")
        try:
            changed = set_device_labels(session, device, schema.load(form), actor=cli_actor())
        except DuplicateAssetTag as exc:
            raise click.ClickException(str(exc)) from exc
        labels = f"asset tag {device.asset_tag or '-'}, user {device.assigned_user or '-'}"
    click.echo(f"device {device_id}: {labels}" + ("" if changed else " (unchanged)"))


@devices.command("allow-reenroll")
@click.argument("device_id", type=int)
@click.option("--hours", type=click.IntRange(1, 168), required=True, help="How long the allowance lasts.")
@pass_ctx
def devices_allow_reenroll(ctx: Context, device_id: int, hours: int) -> None:
    """Let device DEVICE_ID bind a new identity within HOURS (audited; see docs/runbook.md)."""
    from mdm.ground.models import Device
    from mdm.services.devices import allow_reenroll

    with transaction(ctx.session_factory()) as session:
        device = session.get(Device, device_id)
        if device is None:
            raise click.ClickException(f"no device with id {device_id}")
        allow_reenroll(session, device, hours=hours, actor=cli_actor())
        until = device.reenroll_allowed_until
    click.echo(f"device {device_id}: re-enrollment allowed until {until.isoformat() if until else '-'}")


@devices.command("out-of-service")
@click.argument("device_id", type=int)
@click.option("--reason", required=True, help="Why (recorded in the audit trail).")
@pass_ctx
def devices_out_of_service(ctx: Context, device_id: int, reason: str) -> None:
    """Take enrolled Android device DEVICE_ID out of service: certificates revoked, state unenrolled
    (resolves a serial_conflict alert; the tablet then enrolls again as a new device)."""
    from enrollment.out_of_service import OutOfServiceRefused, take_out_of_service
    from mdm.ground.models import Device

    with transaction(ctx.session_factory()) as session:
        device = session.get(Device, device_id)
        if device is None:
            raise click.ClickException(f"no device with id {device_id}")
        try:
            take_out_of_service(session, device, actor=cli_actor(), reason=reason)
        except OutOfServiceRefused as exc:
            raise click.ClickException(f"{exc.field}: {exc}") from exc
    click.echo(f"device {device_id} is out of service; its certificates are revoked")


@main.group()
def command() -> None:
    """Device commands."""


@command.command("send")
@click.argument("udid")
@click.argument("request_type")
@click.option("--param", "params", multiple=True, help="KEY=VALUE (VALUE parsed as JSON when it can be).")
@pass_ctx
def command_send(ctx: Context, udid: str, request_type: str, params: tuple[str, ...]) -> None:
    """Queue REQUEST_TYPE for the device UDID and push it (never EraseDevice: see `hikeshi incident`)."""
    from commands.catalog import CommandParamsError, UnknownCommand, get_command_type
    from commands.queue import CommandRefused, enqueue_command
    from mdm.services.devices import lookup_device_by_udid

    try:
        two_person = get_command_type(request_type).two_person
    except UnknownCommand as exc:
        raise click.ClickException(str(exc)) from exc
    if two_person:
        raise click.ClickException(
            f"{request_type} is never sent directly: it needs two people. Open an incident for the device "
            "(console or API), then `hikeshi incident request-wipe INCIDENT_ID --as USERNAME` and let a "
            "different person approve it, or, as an administrator, add `--break-glass --reason TEXT`."
        )

    parsed: dict[str, object] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    with transaction(ctx.session_factory()) as session:
        device = lookup_device_by_udid(session, udid)
        if device is None:
            raise click.ClickException(f"no device with UDID {udid}")
        try:
            cmd = enqueue_command(
                session, device, request_type, parsed, actor=cli_actor(), context=ctx.commands
            )
        except UnknownCommand as exc:
            raise click.ClickException(str(exc)) from exc
        except CommandParamsError as exc:
            raise click.ClickException(f"{exc}: {json.dumps(exc.fields, ensure_ascii=False)}") from exc
        except CommandRefused as exc:
            raise click.ClickException(f"{exc.field}: {exc}") from exc
        uuid = cmd.uuid
    ctx.dispatcher.wait_idle(60)
    click.echo(f"queued {request_type} {uuid}")


@main.group()
def audit() -> None:
    """Audit trail."""


@audit.command("verify")
@pass_ctx
def audit_verify(ctx: Context) -> None:
    """Seal committed events into the audit hash chain, then verify it; exit 1 naming the first broken row."""
    seal_all(ctx.session_factory())
    with transaction(ctx.session_factory()) as session:
        report = verify_chain(session)
    if report.ok:
        pending = f"; {report.unsealed} written since, not yet sealed" if report.unsealed else ""
        click.echo(f"audit chain intact: {report.checked} events verified{pending}")
        return
    click.echo(
        f"audit chain BROKEN at event id {report.broken_id} (seq {report.broken_seq}): {report.reason}; "
        f"{report.checked} events before it verified",
        err=True,
    )
    sys.exit(1)


def _backup_key(key_file: Path | None) -> BackupKey:
    from mdm.services.backup.crypto import BackupKey, BackupKeyError

    passphrase = BACKUP_PASSPHRASE.read() if key_file is None else None
    try:
        return BackupKey.from_options(passphrase, key_file)
    except BackupKeyError as exc:
        raise click.ClickException(
            f"{exc} (set HIKESHI_BACKUP_PASSPHRASE, or pass --key-file; never keep either beside the backups)"
        ) from exc


@main.command()
@click.option("--to", "directory", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--keep", type=click.IntRange(min=1), default=None, help="Generations to keep in DIR.")
@click.option(
    "--copy-to",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Second directory (off-site) that receives a copy.",
)
@pass_ctx
def backup(
    ctx: Context, directory: Path, key_file: Path | None, keep: int | None, copy_to: Path | None
) -> None:
    """Take a consistent, encrypted online backup (database, secrets, CA) into DIR."""
    from mdm.services.backup.archive import BackupError, copy_offsite, create_backup

    key = _backup_key(key_file)
    try:
        result = create_backup(ctx.settings, directory, key, keep=keep)
        if copy_to is not None:
            copy_offsite(result, copy_to, keep)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"backup written: {result.path} ({result.size} bytes, sha256 {result.sha256})")
    for old in result.pruned:
        click.echo(f"removed old generation {old.name}")


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@pass_ctx
def restore(ctx: Context, path: Path, key_file: Path | None) -> None:
    """Restore a backup onto an empty instance (refuses a tampered file or a wrong key)."""
    from mdm.services.backup.archive import BackupError, restore_backup

    key = _backup_key(key_file)
    # The backup brings the instance secret: none is generated, so a refused restore leaves the
    # target folder as it found it.
    settings = Settings.from_env(generate_secret=False)
    try:
        manifest = restore_backup(settings, path, key)
    except BackupError as exc:
        raise click.ClickException(f"restore refused: {exc}") from exc
    click.echo(f"restored backup of {manifest['created_at']} ({manifest['database']})")
    restored_secret = (settings.instance_path / "secret_key").read_text().strip()
    secret_from_env = SECRET_KEY.read()
    if secret_from_env and secret_from_env != restored_secret:
        click.echo(
            "WARNING: HIKESHI_SECRET_KEY differs from the restored instance secret; set it to the value now "
            f"in {settings.instance_path / 'secret_key'} or the CA and push keys cannot be opened.",
            err=True,
        )


@main.group()
def webhook() -> None:
    """Webhooks for alerts and readiness changes (docs/webhooks.md)."""


@webhook.command("create")
@click.argument("name")
@click.argument("url")
@pass_ctx
def webhook_create(ctx: Context, name: str, url: str) -> None:
    """Create a webhook; its signing secret is printed once."""
    from mdm.services.alerts.webhooks import WebhookError, create_webhook

    try:
        with transaction(ctx.session_factory()) as session:
            hook, secret = create_webhook(
                session,
                cli_actor(),
                name,
                url,
                secret_key=ctx.settings.secret_key,
                allow_networks=ctx.settings.webhook_allow_networks,
            )
            hook_id = hook.id
    except WebhookError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"webhook #{hook_id} {name} → {url}")
    click.echo(f"signing secret (shown only now): {secret}")


@webhook.command("list")
@pass_ctx
def webhook_list(ctx: Context) -> None:
    """List webhooks (never their secrets)."""
    from mdm.services.alerts.webhooks import list_webhooks

    with transaction(ctx.session_factory()) as session:
        for hook in list_webhooks(session):
            state = "enabled" if hook.enabled else "disabled"
            click.echo(f"{hook.id:>4}  {hook.name:<24} {state:<8} {hook.url}")


def _set_webhook(ctx: Context, webhook_id: int, enabled: bool) -> None:
    from mdm.ground.models import Webhook
    from mdm.services.alerts.webhooks import set_webhook_enabled

    with transaction(ctx.session_factory()) as session:
        hook = session.get(Webhook, webhook_id)
        if hook is None:
            raise click.ClickException(f"no webhook with id {webhook_id}")
        set_webhook_enabled(session, cli_actor(), hook, enabled)
    click.echo(f"webhook #{webhook_id} {'enabled' if enabled else 'disabled'}")


@webhook.command("disable")
@click.argument("webhook_id", type=click.IntRange(1, 2**31 - 1))
@pass_ctx
def webhook_disable(ctx: Context, webhook_id: int) -> None:
    """Stop delivering to a webhook (pending deliveries wait)."""
    _set_webhook(ctx, webhook_id, False)


@webhook.command("enable")
@click.argument("webhook_id", type=click.IntRange(1, 2**31 - 1))
@pass_ctx
def webhook_enable(ctx: Context, webhook_id: int) -> None:
    """Deliver to a webhook again."""
    _set_webhook(ctx, webhook_id, True)


@webhook.command("test")
@click.argument("webhook_id", type=click.IntRange(1, 2**31 - 1))
@pass_ctx
def webhook_test(ctx: Context, webhook_id: int) -> None:
    """POST a signed webhook.test body now and show the answer (audited)."""
    from mdm.ground.models import Webhook
    from mdm.services.alerts.webhooks import post_delivery, trial_delivery

    factory = ctx.session_factory()
    with transaction(factory) as session:
        hook = session.get(Webhook, webhook_id)
        if hook is None:
            raise click.ClickException(f"no webhook with id {webhook_id}")
        outgoing = trial_delivery(hook, secret_key=ctx.settings.secret_key)
    outcome = post_delivery(
        outgoing,
        timeout=ctx.settings.webhook_timeout_seconds,
        allow_networks=ctx.settings.webhook_allow_networks,
    )
    with transaction(factory) as session:
        from mdm.ground.audit import record_event

        record_event(
            session,
            cli_actor(),
            "webhook.test_sent",
            "webhook",
            webhook_id,
            {"status_code": outcome.status_code, "error": outcome.error},
        )
    if not outcome.ok:
        raise click.ClickException(f"test delivery failed: {outcome.error}")
    click.echo(f"test delivery answered HTTP {outcome.status_code} in {outcome.duration_ms} ms")


def _register_subcommands() -> None:
    """Commands defined by other packages (enrollment, web, ...) are attached here."""
    from mdm.roots.cli_incidents import COMMANDS as incident_commands
    from mdm.roots.cli_people import AUDIT_COMMANDS as audit_commands
    from mdm.roots.cli_people import COMMANDS as web_commands

    for web_group in [*web_commands, *incident_commands]:
        main.add_command(web_group)
    for audit_command in audit_commands:
        audit.add_command(audit_command)

    from mdm.roots.cli_enrollment import COMMANDS as enrollment_commands
    from mdm.roots.cli_profiles import COMMANDS as profile_commands

    for group in [*enrollment_commands, *profile_commands]:
        main.add_command(group)

    from mdm.roots.scheduler.cli import scheduler_command

    main.add_command(scheduler_command)

    from mdm.roots.cli_ade import COMMANDS as ade_commands
    from mdm.roots.cli_commands import COMMANDS as command_commands
    from mdm.roots.cli_doctor import COMMANDS as doctor_commands
    from mdm.roots.cli_push_cert import COMMANDS as push_cert_commands

    for entry in [*command_commands, *push_cert_commands, *doctor_commands, *ade_commands]:
        main.add_command(entry)

    from mdm.roots.cli_amapi import COMMANDS as amapi_commands
    from mdm.roots.cli_vpp import COMMANDS as vpp_commands

    for entry in [*vpp_commands, *amapi_commands]:
        main.add_command(entry)


_register_subcommands()
