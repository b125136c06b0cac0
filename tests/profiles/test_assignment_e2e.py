"""Profiles assigned to a station reach every iPad below it through /mdm/connect, signed; a new
version re-installs, a move out of the station removes, a ProfileList without it reinstalls."""

from __future__ import annotations

import plistlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from commands.queue import enqueue_command
from mdm.ground.audit import Actor
from mdm.ground.ca import device_ca_certificate
from mdm.ground.db import transaction
from mdm.ground.models import Command, CommandStatus, Device, DeviceProfileState, ProfileRendering
from mdm.ground.x509util import to_pem
from mdm.services import orgunits
from profiles.assignment import (
    assign_profile,
    desired_profiles,
    device_profile_states,
    unassign_profile,
    update_profile_and_apply,
)
from profiles.service import create_profile_from_template, get_profile_by_identifier
from profiles.spec import profile_uuid
from tests.support.apple_device import SimulatedIPad
from tests.support.tools import require_tool

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")
IDENTIFIER = "jp.example.fd.field-standard"


@dataclass
class ManagedIPad:
    """A SimulatedIPad that keeps the profiles it was told to install, as a real one would."""

    ipad: SimulatedIPad
    installed: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    signed_payloads: list[bytes] = field(default_factory=list)

    def drain(self, client: Any) -> list[str]:
        """Fetch and answer every waiting command; the request types, in order."""
        seen: list[str] = []
        response = self.ipad.connect(client, self.ipad.idle_body())
        while response.status_code == 200 and response.data:
            message = plistlib.loads(response.data)
            command = message["Command"]
            request_type = command["RequestType"]
            seen.append(request_type)
            self.received.append((request_type, command))
            extra: dict[str, Any] = {}
            if request_type == "InstallProfile":
                signed = command["Payload"]
                self.signed_payloads.append(signed)
                profile = plistlib.loads(_unsigned_content(signed))
                self.installed[profile["PayloadIdentifier"]] = profile
            elif request_type == "RemoveProfile":
                self.installed.pop(command["Identifier"], None)
            elif request_type == "ProfileList":
                extra["ProfileList"] = self.profile_list()
            elif request_type == "DeviceInformation":
                extra["QueryResponses"] = self.ipad.device_information()
            response = self.ipad.connect(client, self.ipad.result_body(message["CommandUUID"], **extra))
        assert response.status_code == 200
        return seen

    def profile_list(self) -> list[dict[str, Any]]:
        return [
            {
                "PayloadIdentifier": p["PayloadIdentifier"],
                "PayloadUUID": p["PayloadUUID"],
                "PayloadVersion": p["PayloadVersion"],
                "PayloadDisplayName": p["PayloadDisplayName"],
                "IsManaged": True,
            }
            for p in self.installed.values()
        ]


def _unsigned_content(signed: bytes) -> bytes:
    from asn1crypto import cms

    info = cms.ContentInfo.load(signed)
    assert info["content_type"].native == "signed_data"
    return info["content"]["encap_content_info"]["content"].native


@pytest.fixture
def factory(app):
    return app.extensions["hikeshi"].session_factory


@pytest.fixture
def conf(app):
    return app.extensions["hikeshi"].settings


@pytest.fixture
def tree(factory):
    """本部 → 中央署 (station) → 救急隊 A, ポンプ隊 B; 北署 (station) → 救急隊 C."""
    with transaction(factory) as s:
        hq = orgunits.create_unit(s, {"kind": "hq", "name_ja": "消防本部", "code": "HQ"}, actor=ADMIN)
        central = orgunits.create_unit(
            s, {"kind": "station", "name_ja": "中央消防署", "code": "CEN", "parent_id": hq.id}, actor=ADMIN
        )
        north = orgunits.create_unit(
            s, {"kind": "station", "name_ja": "北消防署", "code": "NOR", "parent_id": hq.id}, actor=ADMIN
        )
        units = {
            "CEN": central.id,
            "NOR": north.id,
            "A": orgunits.create_unit(
                s,
                {"kind": "unit", "name_ja": "中央救急隊", "code": "CEN-A1", "parent_id": central.id},
                actor=ADMIN,
            ).id,
            "B": orgunits.create_unit(
                s,
                {"kind": "unit", "name_ja": "中央ポンプ隊", "code": "CEN-P1", "parent_id": central.id},
                actor=ADMIN,
            ).id,
            "C": orgunits.create_unit(
                s,
                {"kind": "unit", "name_ja": "北救急隊", "code": "NOR-A1", "parent_id": north.id},
                actor=ADMIN,
            ).id,
        }
    return units


def _enroll(app, device_ca, name: str) -> ManagedIPad:
    cert, key = device_ca.issue_identity(name)
    ipad = SimulatedIPad(cert, key)
    client = app.test_client()
    assert ipad.checkin(client, ipad.authenticate_body()).status_code == 200
    assert ipad.checkin(client, ipad.token_update_body()).status_code == 200
    return ManagedIPad(ipad)


def _device(s, managed: ManagedIPad) -> Device:
    return s.scalars(select(Device).where(Device.udid == managed.ipad.udid)).one()


def _place(factory, conf, managed: ManagedIPad, unit_id: int) -> None:
    with transaction(factory) as s:
        orgunits.assign_device(s, _device(s, managed), orgunits.get_unit(s, unit_id), actor=ADMIN)


def _verify_with_openssl(tmp_path: Path, signed: bytes, ca_pem: str) -> bytes:
    openssl = require_tool("openssl")
    (tmp_path / "p.der").write_bytes(signed)
    (tmp_path / "ca.pem").write_text(ca_pem)
    done = subprocess.run(
        [
            openssl,
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-binary",
            "-in",
            str(tmp_path / "p.der"),
            "-CAfile",
            str(tmp_path / "ca.pem"),
            "-out",
            str(tmp_path / "out.plist"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return (tmp_path / "out.plist").read_bytes()


def test_station_assignment_installs_updates_removes_and_enforces(
    app, factory, conf, device_ca, tree, tmp_path
):
    client = app.test_client()
    ipads = [_enroll(app, device_ca, f"ipad-{n}") for n in range(3)]
    for managed in ipads:
        managed.drain(client)  # the first inventory after enrollment
    _place(factory, conf, ipads[0], tree["A"])
    _place(factory, conf, ipads[1], tree["A"])
    _place(factory, conf, ipads[2], tree["B"])

    with transaction(factory) as s:
        profile = create_profile_from_template(s, ADMIN, "field-standard", identifier=IDENTIFIER)
        summary = assign_profile(s, conf, profile, orgunits.find_unit_by_code(s, "CEN"), actor=ADMIN)
        assert summary.devices == 3 and len(summary.installs) == 3 and not summary.removals

    # Delivered through /mdm/connect to all three, signed by the built-in CA's profile signer.
    for managed in ipads:
        assert managed.drain(client) == ["InstallProfile"]
        assert set(managed.installed) == {IDENTIFIER}
        assert managed.installed[IDENTIFIER]["PayloadUUID"] == profile_uuid(IDENTIFIER, 1)
    with factory() as s:
        stored = s.scalars(select(ProfileRendering)).one().content
        ca_pem = to_pem(device_ca_certificate(s))
        assert all(m.signed_payloads == [stored] for m in ipads)
        for managed in ipads:
            [state] = device_profile_states(s, _device(s, managed))
            assert (state.desired_version, state.installed_version, state.pending_command_uuid) == (
                1,
                1,
                None,
            )
            assert [p.identifier for p in desired_profiles(s, _device(s, managed))] == [IDENTIFIER]
    content = _verify_with_openssl(tmp_path, stored, ca_pem)
    assert plistlib.loads(content)["PayloadIdentifier"] == IDENTIFIER

    # A new version is installed again everywhere.
    with transaction(factory) as s:
        profile = get_profile_by_identifier(s, IDENTIFIER)
        spec = dict(profile.spec, name_en="Field tablet baseline (v2)")
        _, summary = update_profile_and_apply(s, conf, profile, spec, actor=ADMIN)
        assert summary is not None and len(summary.installs) == 3
    for managed in ipads:
        assert managed.drain(client) == ["InstallProfile"]
        assert managed.installed[IDENTIFIER]["PayloadUUID"] == profile_uuid(IDENTIFIER, 2)

    # Moving a device to a unit outside the station removes the profile by its identifier.
    _place(factory, conf, ipads[2], tree["C"])
    assert ipads[2].drain(client) == ["RemoveProfile"]
    assert ipads[2].received[-1][1]["Identifier"] == IDENTIFIER
    assert ipads[2].installed == {}
    with factory() as s:
        assert device_profile_states(s, _device(s, ipads[2])) == []

    # A ProfileList without the profile (the user removed it) brings it back.
    ipads[0].installed.clear()
    ipads[0].installed["com.example.vpn"] = {
        "PayloadIdentifier": "com.example.vpn",
        "PayloadUUID": "6A4F7E8B-0000-4000-8000-000000000001",
        "PayloadVersion": 1,
        "PayloadDisplayName": "Personal VPN",
    }
    with transaction(factory) as s:
        enqueue_command(s, _device(s, ipads[0]), "ProfileList", {}, actor=ADMIN)
    assert ipads[0].drain(client) == ["ProfileList", "InstallProfile"]
    assert ipads[0].installed[IDENTIFIER]["PayloadUUID"] == profile_uuid(IDENTIFIER, 2)
    with factory() as s:
        states = {st.identifier: st for st in device_profile_states(s, _device(s, ipads[0]))}
        assert states["com.example.vpn"].is_foreign
        assert states["com.example.vpn"].foreign_display_name == "Personal VPN"
        assert states[IDENTIFIER].installed_version == 2
        assert states[IDENTIFIER].last_verified_at is not None

    # Unassigning from the station removes it from the devices still there.
    with transaction(factory) as s:
        profile = get_profile_by_identifier(s, IDENTIFIER)
        summary = unassign_profile(s, conf, profile, orgunits.find_unit_by_code(s, "CEN"), actor=ADMIN)
        assert len(summary.removals) == 2
    for managed in ipads[:2]:
        assert managed.drain(client) == ["RemoveProfile"]
        assert IDENTIFIER not in managed.installed
    with factory() as s:
        assert (
            s.scalars(select(DeviceProfileState).where(DeviceProfileState.identifier == IDENTIFIER)).all()
            == []
        )
        pending = s.scalars(select(Command).where(Command.status.in_(CommandStatus.PENDING))).all()
        assert pending == []
