"""HIKESHI_COMMAND_EXPIRY_DAYS is what the queue uses; lock, lost mode and wipe never expire.

Through the real app: the setting reaches the queue of the API, the command catalog the API
publishes, and what a device is offered after the lifetime has passed."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from commands.catalog import all_command_types
from commands.delivery import next_command
from commands.queue import enqueue_command
from mdm import create_app
from mdm.ground.audit import Actor
from mdm.ground.config import Settings
from mdm.ground.db import transaction
from mdm.ground.models import Command, CommandStatus, Device
from mdm.roots.cli import main
from tests.support.factories import make_device
from tests.web.helpers import bearer, make_token

ADMIN = Actor("admin@hq", "admin", "192.0.2.10")
NEVER_EXPIRE = {
    "DeviceLock",
    "EnableLostMode",
    "DisableLostMode",
    "DeviceLocation",
    "PlayLostModeSound",
    "EraseDevice",
}


@pytest.fixture
def short_lived_app(settings, device_ca):
    application = create_app(replace(settings, device_ca_file=str(device_ca.path), command_expiry_days=2))
    yield application
    application.extensions["hikeshi"].dispatcher.close()
    application.extensions["hikeshi"].engine.dispose()


def test_the_setting_sets_the_lifetime_and_lock_lost_mode_wipe_never_expire(short_lived_app, frozen_clock):
    app = short_lived_app
    factory = app.extensions["hikeshi"].session_factory
    with transaction(factory) as s:
        device_id = make_device(s, supervised=True).id
        token = bearer(make_token(s, "admin"))
    client = app.test_client()
    queued = {}
    for request_type, params in [
        ("SecurityInfo", {}),
        ("DeviceLock", {"Message": "紛失中です"}),
        ("EnableLostMode", {"Message": "紛失中です"}),
        ("DeviceLocation", {}),
    ]:
        answer = client.post(
            f"/api/v1/devices/{device_id}/commands",
            headers=token,
            json={"request_type": request_type, "params": params},
        )
        assert answer.status_code == 201, answer.get_json()
        queued[request_type] = answer.get_json()
    assert queued["SecurityInfo"]["expires_at"].startswith("2026-11-25T03:00:00")  # now + 2 days
    for request_type in ("DeviceLock", "EnableLostMode", "DeviceLocation"):
        assert queued[request_type]["expires_at"] is None

    catalog = {
        row["request_type"]: row for row in client.get("/api/v1/command-types", headers=token).get_json()
    }
    assert catalog["SecurityInfo"]["expires_after_seconds"] == 2 * 86400
    assert catalog["RestartDevice"]["expires_after_seconds"] == 2 * 86400
    for request_type in NEVER_EXPIRE:
        assert catalog[request_type]["expires_after_seconds"] is None, request_type

    # Three days later the tablet comes back: the inventory query has expired, the locks wait.
    frozen_clock.advance(days=3)
    with transaction(factory) as s:
        device = s.get(Device, device_id)
        offered = []
        while (command := next_command(s, device, offer_not_now=True)) is not None:
            offered.append(command.request_type)
            command.status = CommandStatus.ACKNOWLEDGED
        info = s.scalars(select(Command).where(Command.uuid == queued["SecurityInfo"]["uuid"])).one()
        assert info.status == CommandStatus.EXPIRED
    assert offered == ["DeviceLock", "EnableLostMode", "DeviceLocation"]
    shown = client.get(f"/api/v1/commands/{queued['SecurityInfo']['uuid']}", headers=token).get_json()
    assert shown["status"] == "expired" and shown["expired_at"] is not None


def test_a_wipe_queued_by_the_hotline_never_expires(short_lived_app, frozen_clock):
    factory = short_lived_app.extensions["hikeshi"].session_factory
    context = short_lived_app.extensions["hikeshi"].commands  # the app's, as its doors pass it
    with transaction(factory) as s:
        device = make_device(s)
        restart = enqueue_command(s, device, "RestartDevice", {}, actor=ADMIN, context=context)
        # The hotline passes wipe_approved once a second person approved (commands.incidents).
        erase = enqueue_command(
            s, device, "EraseDevice", {}, actor=ADMIN, wipe_approved=True, context=context
        )
        assert restart.expires_at == frozen_clock() + timedelta(days=2)
        assert erase.expires_at is None


def test_catalog_declares_never_expiring_kinds():
    kinds = {kind.request_type: kind for kind in all_command_types()}
    assert {name for name, kind in kinds.items() if kind.never_expires} == NEVER_EXPIRE
    assert kinds["SecurityInfo"].lifetime(timedelta(days=30)) == timedelta(days=30)


@pytest.mark.parametrize("value", ["0", "-3"])
def test_a_lifetime_below_one_day_is_refused_at_start(value, monkeypatch):
    monkeypatch.setenv("HIKESHI_COMMAND_EXPIRY_DAYS", value)
    with pytest.raises(ValueError, match="HIKESHI_COMMAND_EXPIRY_DAYS must be at least 1"):
        Settings.from_env()


def test_the_cli_queues_with_the_configured_lifetime(settings, session, frozen_clock, monkeypatch):
    """`hikeshi command send` reads HIKESHI_COMMAND_EXPIRY_DAYS like the server does."""
    device = make_device(session)
    session.commit()
    for key, value in {
        "HIKESHI_DATABASE_URL": settings.database_url,
        "HIKESHI_INSTANCE_PATH": str(settings.instance_path),
        "HIKESHI_SECRET_KEY": settings.secret_key,
        "HIKESHI_PUSH_ENABLED": "0",
        "HIKESHI_COMMAND_EXPIRY_DAYS": "5",
    }.items():
        monkeypatch.setenv(key, value)
    run = CliRunner().invoke(main, ["command", "send", device.udid, "SecurityInfo"], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    session.expire_all()
    command = session.scalars(select(Command).where(Command.request_type == "SecurityInfo")).one()
    assert command.expires_at - command.queued_at == timedelta(days=5)
