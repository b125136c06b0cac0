from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from mdm.ground import clock
from mdm.ground.audit import SYSTEM, record_event
from mdm.ground.models import Command, PushCertificate
from mdm.roots.cli import main
from tests.support import pki
from tests.support.factories import make_device


@pytest.fixture
def cli_env(settings, monkeypatch):
    env = {
        "HIKESHI_DATABASE_URL": settings.database_url,
        "HIKESHI_INSTANCE_PATH": str(settings.instance_path),
        "HIKESHI_SECRET_KEY": settings.secret_key,
        "HIKESHI_PUSH_ENABLED": "0",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _push_cert_file(tmp_path: Path, topic: str, days: int = 365) -> Path:
    ca, ca_key = pki.make_ca("Apple Push CA (test)")
    cert, key = pki.issue_cert(ca, ca_key, "APSP:test", uid=topic, days=days)
    return pki.write_pem(tmp_path / f"push-{topic}-{days}.pem", cert, key)


def test_audit_verify_names_a_changed_row(cli_env, session):
    for n in range(3):
        record_event(session, SYSTEM, "test.event", details={"n": n})
    session.commit()
    ok = subprocess.run(
        [str(Path(sys.executable).parent / "hikeshi"), "audit", "verify"],
        env={**os.environ, **cli_env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0 and "3 events verified" in ok.stdout
    row_id = session.execute(text("SELECT id FROM audit_events WHERE seq = 2")).scalar_one()
    session.execute(text("UPDATE audit_events SET actor = 'intruder' WHERE seq = 2"))
    session.commit()
    broken = subprocess.run(
        [str(Path(sys.executable).parent / "hikeshi"), "audit", "verify"],
        env={**os.environ, **cli_env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert broken.returncode == 1
    assert f"event id {row_id} (seq 2)" in broken.stderr


def test_push_cert_import_show_and_topic_change(cli_env, tmp_path, session):
    first = _push_cert_file(tmp_path, "com.apple.mgmt.External.aaaa")
    result = _run("push-cert", "import", str(first))
    assert result.exit_code == 0 and "com.apple.mgmt.External.aaaa" in result.output
    stored = session.scalars(select(PushCertificate)).one()
    assert b"PRIVATE KEY" not in stored.key_encrypted

    other = _push_cert_file(tmp_path, "com.apple.mgmt.External.bbbb")
    refused = CliRunner().invoke(main, ["push-cert", "import", str(other)])
    assert refused.exit_code != 0 and "re-enrolled" in refused.output
    session.rollback()
    assert session.scalars(select(PushCertificate.topic).where(PushCertificate.active)).all() == [
        "com.apple.mgmt.External.aaaa"
    ]
    forced = _run("push-cert", "import", str(other), "--force")
    assert forced.exit_code == 0 and "WARNING" in forced.output

    shown = _run("push-cert", "show")
    assert "com.apple.mgmt.External.bbbb" in shown.output and "days left" in shown.output


def test_push_cert_expiring_soon_is_reported(cli_env, tmp_path):
    soon = _push_cert_file(tmp_path, "com.apple.mgmt.External.cccc", days=20)
    assert _run("push-cert", "import", str(soon)).exit_code == 0
    shown = _run("push-cert", "show")
    assert "WARNING" in shown.output and "expires" in shown.output


def test_push_cert_without_key_is_refused(cli_env, tmp_path):
    ca, ca_key = pki.make_ca("Apple Push CA (test)")
    cert, _ = pki.issue_cert(ca, ca_key, "APSP:x", uid="com.apple.mgmt.External.dddd")
    path = pki.write_pem(tmp_path / "nokey.pem", cert)
    result = CliRunner().invoke(main, ["push-cert", "import", str(path)])
    assert result.exit_code != 0 and "private key" in result.output


def test_command_send_queues_and_names_bad_params(cli_env, session):
    device = make_device(session)
    session.commit()
    ok = _run("command", "send", device.udid, "DeviceLock", "--param", "Message=拾得者は119へ")
    assert ok.exit_code == 0 and "queued DeviceLock" in ok.output
    session.rollback()
    cmd = session.scalars(select(Command)).one()
    assert cmd.params == {"Message": "拾得者は119へ"} and cmd.requested_by.startswith("cli:")
    bad = CliRunner().invoke(
        main, ["command", "send", device.udid, "DeviceLock", "--param", "PhoneNumber=abc"]
    )
    assert bad.exit_code != 0 and "PhoneNumber" in bad.output
    unknown = CliRunner().invoke(main, ["command", "send", "NOPE", "DeviceLock"])
    assert unknown.exit_code != 0 and "no device" in unknown.output


def test_devices_list(cli_env, session):
    device = make_device(session, serial="DMPXK1234567")
    device.last_seen_at = clock.now() - timedelta(minutes=5)
    session.commit()
    result = _run("devices", "list")
    assert "DMPXK1234567" in result.output and device.udid in result.output
    assert '"serial": "DMPXK1234567"' in _run("devices", "list", "--json").output


def test_serve_refuses_a_database_behind_migrations(tmp_path, monkeypatch):
    monkeypatch.setenv("HIKESHI_INSTANCE_PATH", str(tmp_path / "inst"))
    monkeypatch.setenv("HIKESHI_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    result = CliRunner().invoke(main, ["serve", "--port", "0"])
    assert result.exit_code != 0 and "hikeshi db upgrade" in result.output
