"""ADE fixtures: the CLI's environment, and a server token made the way ABM makes it."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mdm.roots.cli import main
from tests.support.tools import require_tool


@pytest.fixture
def cli_env(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in {
        "HIKESHI_DATABASE_URL": settings.database_url,
        "HIKESHI_INSTANCE_PATH": str(settings.instance_path),
        "HIKESHI_SECRET_KEY": settings.secret_key,
        "HIKESHI_PUSH_ENABLED": "0",
    }.items():
        monkeypatch.setenv(key, value)
    return settings


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def abm_token(cert_pem: Path, out: Path, fields: dict[str, str], *, cipher: str = "-aes256") -> Path:
    """What ABM's "Download token" gives: the credentials as a MIME text part between BEGIN and
    END MESSAGE, S/MIME-encrypted to the uploaded certificate by real `openssl smime -encrypt`."""
    require_tool("openssl")
    plain = out.with_suffix(".txt")
    plain.write_bytes(
        b"Content-Type: text/plain;charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        b"-----BEGIN MESSAGE-----\n" + json.dumps(fields).encode() + b"\n-----END MESSAGE-----\r\n"
    )
    subprocess.run(
        ["openssl", "smime", "-encrypt", cipher, "-in", str(plain), "-out", str(out), str(cert_pem)],
        check=True,
        capture_output=True,
    )
    plain.unlink()
    return out


def token_fields(expiry: datetime, *, consumer_key: str = "CK_3f2a9c1e") -> dict[str, str]:
    return {
        "consumer_key": consumer_key,
        "consumer_secret": "CS_5b7d0a",
        "access_token": "AT_9e8f7a",
        "access_secret": "AS_1c2d3e",
        "access_token_expiry": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@pytest.fixture
def abm(settings: Any) -> Any:
    """The device assignment service simulator on loopback, with the credentials of one token."""
    from tests.support.ade_service import DeviceAssignmentService, RunningService

    service = DeviceAssignmentService("CK_3f2a9c1e", "CS_5b7d0a", "AT_9e8f7a", "AS_1c2d3e")
    running = RunningService(service)
    yield running
    running.stop()


@pytest.fixture
def ade_settings(settings: Any, abm: Any) -> Any:
    from dataclasses import replace

    return replace(settings, ade_url=abm.url)


@pytest.fixture
def uploaded_token(ade_settings: Any, session_factory: Any, tmp_path: Path) -> Any:
    """A server token for the simulator's credentials, uploaded through the service."""
    from datetime import timedelta

    from mdm.ground import clock
    from mdm.ground.audit import Actor
    from mdm.services.ade.server_token import store_server_token, token_key_certificate

    actor = Actor("admin:test", "admin", "127.0.0.1")
    with session_factory() as session:
        key = token_key_certificate(session, ade_settings, actor=actor)
        cert = tmp_path / "abm.pem"
        cert.write_text(key.cert_pem)
        session.commit()
    p7m = abm_token(cert, tmp_path / "t.p7m", token_fields(clock.now() + timedelta(days=300)))
    with session_factory() as session:
        row = store_server_token(session, ade_settings, p7m.read_bytes(), actor=actor)
        session.commit()
        return row.id
