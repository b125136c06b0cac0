"""`hikeshi profile ...` against a real database: create, list, validate, preview, assign,
unassign and export (a signed .mobileconfig that openssl accepts)."""

from __future__ import annotations

import json
import plistlib
import subprocess

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from mdm.ground.audit import Actor
from mdm.ground.ca import device_ca_certificate, ensure_ca
from mdm.ground.models import Command, ProfileAssignment
from mdm.ground.x509util import to_pem
from mdm.roots.cli import main
from mdm.services import orgunits
from tests.support.factories import make_device
from tests.support.tools import require_tool

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")
IDENTIFIER = "jp.example.fd.strict"


@pytest.fixture
def cli_env(settings, monkeypatch, session):
    env = {
        "HIKESHI_DATABASE_URL": settings.database_url,
        "HIKESHI_INSTANCE_PATH": str(settings.instance_path),
        "HIKESHI_SECRET_KEY": settings.secret_key,
        "HIKESHI_PUSH_ENABLED": "0",
        "HIKESHI_PUBLIC_URL": settings.public_url,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ensure_ca(session, settings)
    hq = orgunits.create_unit(session, {"kind": "hq", "name_ja": "本部", "code": "HQ"}, actor=ADMIN)
    station = orgunits.create_unit(
        session, {"kind": "station", "name_ja": "中央署", "code": "CEN", "parent_id": hq.id}, actor=ADMIN
    )
    for _ in range(3):
        make_device(session).org_unit_id = station.id
    session.commit()
    return env


def _run(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args))
    assert (result.exit_code == 0) == ok, result.output
    return result


def test_create_list_preview_assign_unassign(cli_env, session):
    out = _run("profile", "create", "--template", "strict", "--identifier", IDENTIFIER).output
    assert IDENTIFIER in out and "v1" in out
    refused = _run("profile", "create", "--template", "strict", "--identifier", IDENTIFIER, ok=False)
    assert "identifier" in refused.output
    assert (
        "no-such"
        in _run("profile", "create", "--template", "no-such", "--identifier", "a.b", ok=False).output
    )

    apple = _run("profile", "preview", IDENTIFIER, "--platform", "apple").stdout
    assert plistlib.loads(apple.encode())["PayloadIdentifier"] == IDENTIFIER
    android = json.loads(_run("profile", "preview", IDENTIFIER, "--platform", "android").stdout)
    assert android["cameraAccess"] == "CAMERA_ACCESS_DISABLED"

    assert (
        "3 devices, 3 installs, 0 removals" in _run("profile", "assign", IDENTIFIER, "--unit", "CEN").output
    )
    assert "CEN" in _run("profile", "list").output
    assert "already assigned" in _run("profile", "assign", IDENTIFIER, "--unit", "CEN", ok=False).output
    assert "--unit" in _run("profile", "assign", IDENTIFIER, "--unit", "NOPE", ok=False).output
    session.rollback()
    assert len(session.scalars(select(Command).where(Command.request_type == "InstallProfile")).all()) == 3

    assert (
        "0 removals queued, 3 undelivered installs cancelled"
        in _run("profile", "unassign", IDENTIFIER, "--unit", "CEN").output
    )
    session.rollback()
    assert session.scalars(select(ProfileAssignment)).all() == []


def test_validate_names_the_bad_field(cli_env, tmp_path):
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps(
            {
                "identifier": "jp.example.fd.pass",
                "name_ja": "パスコード",
                "name_en": "Passcode",
                "payloads": [{"kind": "passcode", "settings": {"min_length": 6}}],
            }
        )
    )
    assert "ok: jp.example.fd.pass" in _run("profile", "validate", str(good)).output
    bad = tmp_path / "bad.json"
    bad.write_text(good.read_text().replace('"min_length": 6', '"min_length": 0'))
    out = _run("profile", "validate", str(bad), ok=False).output
    assert "min_length" in out


def test_export_apple_is_signed_and_verifies(cli_env, session, tmp_path):
    openssl = require_tool("openssl")
    _run("profile", "create", "--template", "field-standard", "--identifier", "jp.example.fd.base")
    exported = CliRunner().invoke(main, ["profile", "export", "jp.example.fd.base", "--platform", "apple"])
    assert exported.exit_code == 0, exported.output
    (tmp_path / "x.mobileconfig").write_bytes(exported.stdout_bytes)
    (tmp_path / "ca.pem").write_text(to_pem(device_ca_certificate(session)))
    done = subprocess.run(
        [
            openssl,
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-binary",
            "-in",
            str(tmp_path / "x.mobileconfig"),
            "-CAfile",
            str(tmp_path / "ca.pem"),
            "-out",
            str(tmp_path / "x.plist"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert plistlib.loads((tmp_path / "x.plist").read_bytes())["PayloadIdentifier"] == "jp.example.fd.base"
    policy = _run("profile", "export", "jp.example.fd.base", "--platform", "android").stdout
    assert "passwordPolicies" in json.loads(policy)


def test_update_saves_a_new_version_and_reinstalls(cli_env, session, tmp_path):
    _run("profile", "create", "--template", "field-standard", "--identifier", "jp.example.fd.base")
    _run("profile", "assign", "jp.example.fd.base", "--unit", "CEN")
    spec = json.loads(_run("profile", "export", "jp.example.fd.base", "--platform", "android").stdout)
    assert spec["passwordPolicies"][0]["passwordMinimumLength"] == 6
    from profiles.templates import template_spec

    changed = template_spec("field-standard", identifier="jp.example.fd.base")
    changed["payloads"][0]["settings"]["min_length"] = 8
    (tmp_path / "v2.json").write_text(json.dumps(changed))
    out = _run("profile", "update", "jp.example.fd.base", "--spec", str(tmp_path / "v2.json")).output
    # Three devices had v1 queued; each gets v2 instead.
    assert "jp.example.fd.base v2: 3 devices, 3 installs queued" in out
    assert (
        "unchanged"
        in _run("profile", "update", "jp.example.fd.base", "--spec", str(tmp_path / "v2.json")).output
    )
    changed["payloads"][0]["settings"]["min_length"] = 0
    (tmp_path / "bad.json").write_text(json.dumps(changed))
    refused = _run("profile", "update", "jp.example.fd.base", "--spec", str(tmp_path / "bad.json"), ok=False)
    assert "min_length" in refused.output
    policy = json.loads(_run("profile", "export", "jp.example.fd.base", "--platform", "android").stdout)
    assert policy["passwordPolicies"][0]["passwordMinimumLength"] == 8
