"""`hikeshi ca`, `hikeshi units`, `hikeshi enroll token` on a real database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import hashes
from sqlalchemy import select
from sqlalchemy.orm import Session

from enrollment import tokens
from mdm.ground.config import Settings
from mdm.ground.models import AuditEvent, EnrollmentToken, OrgUnit
from mdm.roots.cli import main


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "HIKESHI_DATABASE_URL": settings.database_url,
        "HIKESHI_INSTANCE_PATH": str(settings.instance_path),
        "HIKESHI_SECRET_KEY": settings.secret_key,
        "HIKESHI_PUBLIC_URL": "https://mdm.example.jp",
        "HIKESHI_PUSH_ENABLED": "0",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_ca_show_and_init(cli_env: Any, session: Session) -> None:
    missing = _run("ca", "show")
    assert missing.exit_code == 1 and "no CA yet" in missing.output
    assert "created: device-ca, profile-signing" in _run("ca", "init").output
    assert "already exists" in _run("ca", "init").output
    shown = _run("ca", "show")
    assert shown.exit_code == 0
    from mdm.ground.ca import device_ca_certificate

    cert = device_ca_certificate(session)
    digest = cert.fingerprint(hashes.SHA256())
    assert ":".join(f"{b:02X}" for b in digest) in shown.output
    assert cert.subject.rfc4514_string() in shown.output
    assert f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC" in shown.output
    assert "profile signer:" in shown.output


def test_units_commands(cli_env: Any, session: Session) -> None:
    assert _run("units", "create", "--kind", "hq", "--name-ja", "東京消防本部", "--code", "HQ").exit_code == 0
    assert (
        _run(
            "units",
            "create",
            "--kind",
            "station",
            "--name-ja",
            "中央消防署",
            "--code",
            "ST01",
            "--parent",
            "HQ",
        ).exit_code
        == 0
    )
    out = _run(
        "units",
        "create",
        "--kind",
        "unit",
        "--name-ja",
        "中央救急隊",
        "--code",
        "A01",
        "--parent",
        "ST01",
        "--unit-type",
        "ambulance",
    ).output
    assert "東京消防本部 / 中央消防署 / 中央救急隊" in out
    bad = _run("units", "create", "--kind", "branch", "--name-ja", "x", "--parent", "HQ")
    assert bad.exit_code != 0 and "parent_id" in bad.output
    dup = _run("units", "create", "--kind", "hq", "--name-ja", "y", "--code", "HQ")
    assert dup.exit_code != 0 and "code" in dup.output

    assert (
        "中央救急第一隊"
        in _run("units", "rename", "A01", "--name-ja", "中央救急第一隊", "--name-en", "Ambulance 1").output
    )
    assert (
        _run(
            "units",
            "create",
            "--kind",
            "station",
            "--name-ja",
            "西消防署",
            "--code",
            "ST02",
            "--parent",
            "HQ",
        ).exit_code
        == 0
    )
    assert "西消防署 / 中央救急第一隊" in _run("units", "move", "A01", "--parent", "ST02").output
    cycle = _run("units", "move", "HQ", "--parent", "ST02")
    assert cycle.exit_code != 0 and "parent_id" in cycle.output

    listing = _run("units", "list").output.splitlines()
    assert listing[0].startswith("[HQ] 東京消防本部")
    assert any(line.startswith("    [A01] 中央救急第一隊 (Ambulance 1)") for line in listing)
    records = [json.loads(line) for line in _run("units", "list", "--json").output.splitlines()]
    assert [r["code"] for r in records] == ["HQ", "ST01", "ST02", "A01"]
    session.rollback()  # end the read snapshot to see what the server wrote
    session.expire_all()
    assert session.scalars(select(OrgUnit).where(OrgUnit.code == "A01")).one().unit_type == "ambulance"


def test_token_commands(cli_env: Any, session: Session, tmp_path: Path) -> None:
    _run("units", "create", "--kind", "hq", "--name-ja", "東京消防本部", "--code", "HQ")
    qr_file = tmp_path / "token.png"
    created = _run(
        "enroll",
        "token",
        "create",
        "--unit",
        "HQ",
        "--uses",
        "20",
        "--expires",
        "7d",
        "--json",
        "--qr-png",
        str(qr_file),
    )
    assert created.exit_code == 0, created.output
    record = json.loads(created.output)
    assert record["max_uses"] == 20 and record["platform"] == "apple"
    assert record["url"].startswith("https://mdm.example.jp/enroll/")
    secret = record["url"].rsplit("/", 1)[1]
    assert qr_file.read_bytes().startswith(b"\x89PNG")
    token = session.scalars(select(EnrollmentToken)).one()
    assert token.token_hash == tokens.hash_secret(secret) and token.max_uses == 20

    # Android provisioning is not configured here: no token whose QR code cannot be made.
    plain = _run("enroll", "token", "create", "--unit", "HQ", "--platform", "android", "--expires", "12h")
    assert plain.exit_code != 0 and "HIKESHI_ANDROID_AGENT_URL" in plain.output
    bad = _run("enroll", "token", "create", "--unit", "NOPE")
    assert bad.exit_code != 0 and "NOPE" in bad.output
    bad = _run("enroll", "token", "create", "--unit", "HQ", "--expires", "soon")
    assert bad.exit_code != 0 and "--expires" in bad.output
    bad = _run("enroll", "token", "create", "--unit", "HQ", "--uses", "0")
    assert bad.exit_code != 0 and "max_uses" in bad.output

    listing = _run("enroll", "token", "list").output
    assert f"#{token.id}" in listing and "0/20" in listing and "active" in listing
    assert (
        "revoked token" in _run("enroll", "token", "revoke", str(token.id), "--reason", "sheet lost").output
    )
    assert _run("enroll", "token", "revoke", "9999").exit_code != 0
    rows = [json.loads(line) for line in _run("enroll", "token", "list", "--json").output.splitlines()]
    assert {r["id"]: r["state"] for r in rows}[token.id] == "revoked"
    assert all(
        r["id"] != token.id
        for r in map(json.loads, _run("enroll", "token", "list", "--active", "--json").output.splitlines())
    )
    session.rollback()  # end the read snapshot to see what the server wrote
    session.expire_all()
    actions = [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions.count("enrollment_token.created") == 1 and "enrollment_token.revoked" in actions
    assert all(e.actor.startswith("cli:") for e in session.scalars(select(AuditEvent)))
