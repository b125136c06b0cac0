"""Android enrollment tokens outside the console: `hikeshi enroll token create --platform android`
prints the Android provisioning sheet and writes the device-owner QR code; the Apple enrollment
pages refuse an android token (its sheet address leads to the Android sheet)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session

from enrollment import android_qr, tokens
from mdm.ground.config import Settings
from mdm.ground.models import EnrollmentToken
from mdm.roots.cli import main
from tests.support.tools import require_tool

CHECKSUM = "gJD2YwtOiWJHkSMkkIfLRlj-quNqG1fb6v100QmzM9w="
AGENT_URL = "https://mdm.example.jp/agent/hikeshi-agent.apk"


@pytest.fixture
def enroll_settings(settings: Settings) -> Settings:
    """The enrollment app (tests/enrollment/conftest.py) with the Android agent configured."""
    return replace(
        settings,
        push_enabled=False,
        android_agent_download_url=AGENT_URL,
        android_agent_signature_checksum=CHECKSUM,
    )


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "HIKESHI_DATABASE_URL": settings.database_url,
        "HIKESHI_INSTANCE_PATH": str(settings.instance_path),
        "HIKESHI_SECRET_KEY": settings.secret_key,
        "HIKESHI_PUBLIC_URL": "https://mdm.example.jp",
        "HIKESHI_PUSH_ENABLED": "0",
        "HIKESHI_ANDROID_AGENT_URL": AGENT_URL,
        "HIKESHI_ANDROID_AGENT_CHECKSUM": CHECKSUM,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _create(*extra: str) -> Result:
    return _run("enroll", "token", "create", "--unit", "A01", "--platform", "android", *extra)


def _secret_of(sheet_url: str) -> str:
    path = urlsplit(sheet_url).path
    assert path.startswith("/android/provisioning/") and path.endswith("/sheet"), sheet_url
    return path.split("/")[3]


@pytest.mark.tool
def test_cli_prints_the_android_sheet_and_writes_the_provisioning_qr(
    cli_env: Any, tree: Any, session: Session, tmp_path: Path
) -> None:
    zbarimg = require_tool("zbarimg", "zbar-tools")
    png = tmp_path / "android.png"
    made = _create("--uses", "3", "--json", "--qr-png", str(png))
    assert made.exit_code == 0, made.output
    record = json.loads(made.stdout)
    assert record["platform"] == "android" and record["max_uses"] == 3
    # No Apple-style address: a tablet never opens /enroll/<secret>; the sheet prints the code.
    assert record["url"] is None
    assert "/enroll/" not in made.output
    secret = _secret_of(record["sheet_url"])
    assert record["sheet_url"] == f"https://mdm.example.jp/android/provisioning/{secret}/sheet"
    assert record["qr_png_url"] == f"https://mdm.example.jp/android/provisioning/{secret}/qr.png"
    token = session.scalars(select(EnrollmentToken)).one()
    assert token.token_hash == tokens.hash_secret(secret) and token.platform == "android"

    # The PNG is the device-owner provisioning code, not a URL.
    read = subprocess.run([zbarimg, "--quiet", "--raw", str(png)], capture_output=True, text=True, timeout=60)
    assert read.returncode == 0, read.stderr
    payload = json.loads(read.stdout.strip())
    assert payload[android_qr.SIGNATURE_CHECKSUM] == CHECKSUM
    assert payload[android_qr.DOWNLOAD_LOCATION] == AGENT_URL
    assert payload[android_qr.ADMIN_EXTRAS_BUNDLE] == {
        "hikeshi.server_url": "https://mdm.example.jp",
        "hikeshi.enrollment_token": secret,
    }


def test_cli_text_output_for_an_android_token(cli_env: Any, tree: Any) -> None:
    made = _create("--expires", "12h")
    assert made.exit_code == 0, made.output
    text = made.stdout
    assert "(android, 1 uses)" in text
    assert "/enroll/" not in text and "URL:" not in text
    sheet_line = next(line for line in text.splitlines() if line.startswith("sheet:"))
    secret = _secret_of(sheet_line.split()[-1])
    assert f"https://mdm.example.jp/android/provisioning/{secret}/qr.png" in text
    assert "shown only now" in text
    assert made.stderr == ""  # configured: no warning


def test_cli_refuses_the_qr_before_making_a_token_when_android_is_not_configured(
    cli_env: Any, tree: Any, session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HIKESHI_ANDROID_AGENT_URL")
    png = tmp_path / "android.png"
    refused = _create("--qr-png", str(png))
    assert refused.exit_code != 0
    assert "HIKESHI_ANDROID_AGENT_URL" in refused.output
    assert "HIKESHI_ANDROID_AGENT_CHECKSUM" not in refused.output
    assert not png.exists()
    assert session.scalars(select(EnrollmentToken)).all() == []  # nothing half-made

    # Without --qr-png too: a token whose QR code cannot be made is refused (issue #19 item 8).
    refused = _create("--json")
    assert refused.exit_code != 0 and "HIKESHI_ANDROID_AGENT_URL" in refused.output
    assert session.scalars(select(EnrollmentToken)).all() == []


def test_apple_tokens_keep_their_enrollment_url(cli_env: Any, tree: Any, tmp_path: Path) -> None:
    png = tmp_path / "apple.png"
    made = _run("enroll", "token", "create", "--unit", "A01", "--json", "--qr-png", str(png))
    record = json.loads(made.stdout)
    assert record["url"].startswith("https://mdm.example.jp/enroll/")
    assert record["sheet_url"] == record["url"] + "/sheet"
    assert png.read_bytes().startswith(b"\x89PNG")


# -- the public Apple enrollment pages and an android token -------------------------------------------


@pytest.mark.parametrize("path", ["", "/qr.png", "/qr.svg"])
def test_apple_pages_refuse_an_android_token(
    enroll_client: Any, tree: Any, make_token: Any, session: Session, path: str
) -> None:
    created = make_token(tree.ambulance, platform="android")
    response = enroll_client.get(f"/enroll/{created.secret}{path}")
    assert response.status_code == 409
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    assert "Android" in html and "別の種類の端末" in html and "Traceback" not in html
    session.rollback()
    session.expire_all()
    assert session.get(EnrollmentToken, created.token.id).use_count == 0  # type: ignore[union-attr]


def test_the_apple_sheet_address_of_an_android_token_leads_to_the_android_sheet(
    enroll_client: Any, tree: Any, make_token: Any
) -> None:
    created = make_token(tree.ambulance, platform="android", uses=2)
    response = enroll_client.get(f"/enroll/{created.secret}/sheet")
    assert response.status_code == 303
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    location = urlsplit(response.headers["Location"]).path
    assert location == f"/android/provisioning/{created.secret}/sheet"
    sheet = enroll_client.get(location)
    html = sheet.get_data(as_text=True)
    assert sheet.status_code == 200 and "Android 端末登録シート" in html and "<svg" in html
    # The Apple sheet of an Apple token is unchanged; an Apple token has no Android sheet.
    apple = make_token(tree.ambulance)
    assert enroll_client.get(f"/enroll/{apple.secret}/sheet").status_code == 200
    assert enroll_client.get(f"/android/provisioning/{apple.secret}/sheet").status_code == 404


def test_the_cli_sheet_url_opens_the_android_sheet(cli_env: Any, enroll_client: Any, tree: Any) -> None:
    record = json.loads(_create("--json").stdout)
    path = urlsplit(record["sheet_url"]).path
    sheet = enroll_client.get(path)
    assert sheet.status_code == 200 and "中央救急隊" in sheet.get_data(as_text=True)
    png = enroll_client.get(urlsplit(record["qr_png_url"]).path)
    assert png.status_code == 200 and png.headers["Content-Type"] == "image/png"
