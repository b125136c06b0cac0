"""Assigning a profile to a unit is set-based (issue 23, item 4): the SQL statements it runs do not
grow with the number of devices, the signed profile is stored once and referenced by every install,
and each device still gets the correct signed profile, verifiable against the device CA, when the
command is delivered. Counted, not timed; speed is measured in tests/bench/bench_profile_assignment.py.
"""

from __future__ import annotations

import plistlib
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from commands.catalog import CommandParamsError, get_command_type
from commands.context import DeliveryContext
from commands.delivery import deliver_next_commands
from mdm.ground.audit import Actor, verify_chain
from mdm.ground.ca import device_ca_certificate, ensure_ca
from mdm.ground.config import Settings
from mdm.ground.models import (
    AuditEvent,
    Command,
    CommandStatus,
    Device,
    OrgUnit,
    OutboxEntry,
    ProfileRendering,
)
from mdm.ground.x509util import to_pem
from mdm.services import orgunits
from profiles.assignment import apply_profile_version, assign_profile
from profiles.service import create_profile_from_template, update_profile
from tests.support.factories import make_device
from tests.support.tools import require_tool

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")
FEW, MANY = 5, 20


@pytest.fixture
def ready(session: Session, settings: Settings) -> Settings:
    ensure_ca(session, settings)
    session.flush()
    return settings


@contextmanager
def counted(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []
    me = threading.get_ident()

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if threading.get_ident() == me:  # not the app's background threads, if any run
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", before)


def _station(session: Session, code: str, devices: int) -> tuple[OrgUnit, list[Device]]:
    hq = session.scalars(select(OrgUnit).where(OrgUnit.code == "HQ")).first()
    if hq is None:
        hq = orgunits.create_unit(session, {"kind": "hq", "name_ja": "本部", "code": "HQ"}, actor=ADMIN)
    station = orgunits.create_unit(
        session, {"kind": "station", "name_ja": f"{code}署", "code": code, "parent_id": hq.id}, actor=ADMIN
    )
    made = []
    for _ in range(devices):
        device = make_device(session)
        device.org_unit_id = station.id
        made.append(device)
    session.flush()
    return station, made


def _assign(
    session: Session, settings: Settings, code: str, devices: int
) -> tuple[list[str], Any, list[Device]]:
    """A fresh profile (signed here, as every first assignment is) to a fresh station of `devices`."""
    station, made = _station(session, code, devices)
    profile = create_profile_from_template(session, ADMIN, "field-standard", identifier=f"jp.example.{code}")
    session.flush()
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    with counted(engine) as statements:
        summary = assign_profile(session, settings, profile, station, actor=ADMIN)
        session.flush()
    assert summary.devices == devices and len(summary.installs) == devices
    return statements, profile, made


def _deliver(session: Session, device: Device, settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """What the device is handed, rendered exactly as /mdm/connect renders it."""

    def render(command: Command) -> tuple[str, dict[str, Any]]:
        keys = get_command_type(command.request_type).apple_command(
            dict(command.params), DeliveryContext(device, settings.secret_key)
        )
        return command.request_type, keys

    return deliver_next_commands(session, device, render, limit=1, offer_not_now=True, actor=ADMIN)


def _verified_content(openssl: str, tmp_path: Path, signed: bytes, ca_pem: str) -> bytes:
    signed_file, ca_file, out = tmp_path / "p.mobileconfig", tmp_path / "ca.pem", tmp_path / "p.plist"
    signed_file.write_bytes(signed)
    ca_file.write_text(ca_pem)
    arguments = ["cms", "-verify", "-inform", "DER", "-binary", "-in", str(signed_file)]
    arguments += ["-CAfile", str(ca_file), "-out", str(out)]
    done = subprocess.run(
        [openssl, *arguments],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "Verification successful" in done.stderr, done.stderr
    return out.read_bytes()


def test_assignment_statements_do_not_grow_with_the_devices(
    session: Session, ready: Settings, tmp_path: Path
) -> None:
    openssl = require_tool("openssl")
    few, _, _ = _assign(session, ready, "FEW", FEW)
    many, profile, devices = _assign(session, ready, "MANY", MANY)

    assert len(many) == len(few), (
        f"{len(few)} statements for {FEW} devices, {len(many)} for {MANY}: the assignment grows with the "
        "fleet\n" + "\n".join(many)
    )
    assert len(many) <= 40
    # One push request statement for the whole batch, and one audit insert: not one per device.
    assert sum("outbox" in s.lower() and s.lstrip().upper().startswith("INSERT") for s in many) == 1
    assert sum("audit_events" in s and s.lstrip().upper().startswith("INSERT") for s in many) == 1
    assert session.scalar(select(func.count()).select_from(OutboxEntry)) == FEW + MANY

    # The signed profile is stored once per version; the installs refer to it by digest.
    rendering = session.scalars(
        select(ProfileRendering).where(ProfileRendering.profile_id == profile.id)
    ).one()
    installs = list(session.scalars(select(Command).where(Command.device_id.in_([d.id for d in devices]))))
    assert {c.device_id for c in installs} == {d.id for d in devices}
    for command in installs:
        assert command.params == {
            "Rendering": {"profile_id": profile.id, "version": 1, "sha256": rendering.sha256}
        }
    [event_row] = session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "profile.assigned", AuditEvent.target_id == str(profile.id)
        )
    ).all()
    assert event_row.details["devices"] == MANY and event_row.details["installs"] == MANY
    assert {c.batch for c in installs} == {event_row.details["batch"]}

    # Every device is handed the signed profile itself, and it verifies against the device CA.
    ca_pem = to_pem(device_ca_certificate(session))
    for device in devices:
        [(request_type, keys)] = _deliver(session, device, ready)
        assert request_type == "InstallProfile" and set(keys) == {"Payload"}
        assert keys["Payload"] == rendering.content
        content = plistlib.loads(_verified_content(openssl, tmp_path, keys["Payload"], ca_pem))
        assert content["PayloadIdentifier"] == profile.identifier
    session.flush()
    statuses = set(session.scalars(select(Command.status).where(Command.id.in_([c.id for c in installs]))))
    assert statuses == {CommandStatus.SENT}
    assert verify_chain(session).ok  # last: it empties the session


def test_a_stored_profile_changed_after_queueing_is_never_sent(session: Session, ready: Settings) -> None:
    _, profile, devices = _assign(session, ready, "TAMPER", 2)
    rendering = session.scalars(
        select(ProfileRendering).where(ProfileRendering.profile_id == profile.id)
    ).one()
    rendering.content = rendering.content + b"\x00"
    rendering.sha256 = "0" * 64
    session.flush()

    assert _deliver(session, devices[0], ready) == []
    [install] = session.scalars(select(Command).where(Command.device_id == devices[0].id)).all()
    assert install.status == CommandStatus.ERROR
    assert "no longer stored as it was" in str(install.error_chain)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"Payload": "AAAA", "Rendering": {"profile_id": 1, "version": 1, "sha256": "a" * 64}},
        {"Rendering": {"profile_id": 1, "version": 1, "sha256": "not hex"}},
    ],
)
def test_install_needs_exactly_one_well_formed_profile(params: dict[str, Any]) -> None:
    with pytest.raises(CommandParamsError) as err:
        get_command_type("InstallProfile").validate(params)
    assert set(err.value.fields) & {"Payload", "Rendering"}


def test_a_new_version_is_queued_for_every_device_with_one_audit_event(
    session: Session, ready: Settings
) -> None:
    _, profile, devices = _assign(session, ready, "NEWVER", 3)
    update_profile(session, ADMIN, profile, dict(profile.spec, name_en="Field standard v2"))
    summary = apply_profile_version(session, ready, profile, actor=ADMIN)

    assert len(summary.installs) == 3 and len(summary.cancelled) == 3  # v1, undelivered, replaced
    queued = session.scalar(select(func.count()).where(AuditEvent.action == "command.queued"))
    assert queued == 0
    [applied] = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "profile.version_applied")
    ).all()
    assert (applied.details["version"], applied.details["installs"], applied.details["devices"]) == (2, 3, 3)
    batch = set(session.scalars(select(Command.device_id).where(Command.batch == applied.details["batch"])))
    assert batch == {d.id for d in devices}
