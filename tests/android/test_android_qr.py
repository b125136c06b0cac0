"""The device-owner provisioning QR code: zbarimg reads it back to the JSON Android's setup wizard
expects, with every key, and the checksum is that of the agent's signing certificate."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from enrollment import android_qr
from enrollment.qr import make_qr
from mdm.ground.config import Settings
from tests.support.pki import make_ca, write_pem
from tests.support.tools import require_tool

TOKEN = "q6v0o3QJd2S1c5hRr7z8nW1bX9kM4pLe"


@pytest.fixture
def agent_signing_cert(tmp_path: Path) -> tuple[Any, Path]:
    """A stand-in for the agent APK's signing certificate (self-signed, as Android app keys are)."""
    cert, _key = make_ca("Hikeshi Agent Release Key")
    return cert, write_pem(tmp_path / "agent-signing.pem", cert)


@pytest.fixture
def qr_settings(settings: Settings, agent_signing_cert: tuple[Any, Path]) -> Settings:
    return replace(
        settings,
        android_agent_download_url="https://mdm.test.invalid/agent/hikeshi-agent-1.0.apk",
        android_agent_signing_cert_file=str(agent_signing_cert[1]),
        android_provisioning_wifi_ssid="FD-Provisioning",
        android_provisioning_wifi_security="WPA",
        android_provisioning_wifi_password="correct horse battery",
    )


def _expected_checksum(cert: Any) -> str:
    # Independent of the module: SHA-256 of the DER certificate, URL-safe base64 as Android wants.
    digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()
    assert digest == cert.fingerprint(hashes.SHA256())
    return base64.urlsafe_b64encode(digest).decode()


@pytest.mark.tool
def test_zbarimg_reads_the_provisioning_json_with_every_key(
    qr_settings: Settings, agent_signing_cert: tuple[Any, Path], tmp_path: Path
) -> None:
    zbarimg = require_tool("zbarimg", "zbar-tools")
    image = tmp_path / "android-qr.png"
    image.write_bytes(android_qr.qr_png(qr_settings, TOKEN))
    result = subprocess.run(
        [zbarimg, "--quiet", "--raw", str(image)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout.strip()
    payload = json.loads(text)
    extra = "android.app.extra."
    assert payload == {
        extra + "PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME": "jp.hikeshi.agent/.HikeshiAdminReceiver",
        extra + "PROVISIONING_DEVICE_ADMIN_PACKAGE_DOWNLOAD_LOCATION": (
            "https://mdm.test.invalid/agent/hikeshi-agent-1.0.apk"
        ),
        extra + "PROVISIONING_DEVICE_ADMIN_SIGNATURE_CHECKSUM": _expected_checksum(agent_signing_cert[0]),
        extra + "PROVISIONING_LEAVE_ALL_SYSTEM_APPS_ENABLED": True,
        extra + "PROVISIONING_WIFI_SSID": "FD-Provisioning",
        extra + "PROVISIONING_WIFI_SECURITY_TYPE": "WPA",
        extra + "PROVISIONING_WIFI_PASSWORD": "correct horse battery",
        extra + "PROVISIONING_TIME_ZONE": "Asia/Tokyo",
        extra + "PROVISIONING_LOCALE": "ja_JP",
        extra + "PROVISIONING_ADMIN_EXTRAS_BUNDLE": {
            "hikeshi.server_url": "https://mdm.test.invalid",
            "hikeshi.enrollment_token": TOKEN,
        },
    }
    # Compact JSON, exactly what the module produces.
    assert text == android_qr.provisioning_json(qr_settings, TOKEN)
    assert ", " not in text and ": " not in text


def test_checksum_format_and_error_correction(
    qr_settings: Settings, agent_signing_cert: tuple[Any, Path]
) -> None:
    cert = agent_signing_cert[0]
    checksum = android_qr.signature_checksum(cert)
    assert checksum == _expected_checksum(cert)
    assert len(checksum) == 44 and checksum.endswith("=") and "+" not in checksum and "/" not in checksum
    assert android_qr.signature_checksum(cert.public_bytes(Encoding.DER)) == checksum
    # A checksum set directly wins over the certificate file.
    direct = replace(
        qr_settings, android_agent_signature_checksum="gJD2YwtOiWJHkSMkkIfLRlj-quNqG1fb6v100QmzM9w="
    )
    payload = android_qr.provisioning_payload(direct, TOKEN)
    assert payload[android_qr.SIGNATURE_CHECKSUM] == "gJD2YwtOiWJHkSMkkIfLRlj-quNqG1fb6v100QmzM9w="
    assert make_qr(android_qr.provisioning_json(qr_settings, TOKEN)).error == "M"


def test_without_wifi_the_wifi_keys_are_absent(qr_settings: Settings) -> None:
    plain = replace(qr_settings, android_provisioning_wifi_ssid=None)
    payload = android_qr.provisioning_payload(plain, TOKEN)
    assert not [key for key in payload if "WIFI" in key]


def test_missing_settings_are_named(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(android_qr.ProvisioningNotConfigured) as err:
        android_qr.provisioning_payload(settings, TOKEN)
    assert set(err.value.settings) == {"HIKESHI_ANDROID_AGENT_URL", "HIKESHI_ANDROID_AGENT_CHECKSUM"}
    broken = replace(
        settings,
        android_agent_download_url="http://plain.example/agent.apk",
        android_agent_component="com.other/.Receiver",
        android_agent_signing_cert_file=str(tmp_path / "missing.pem"),
        android_provisioning_wifi_security="WPA3",
    )
    with pytest.raises(android_qr.ProvisioningNotConfigured) as err:
        android_qr.provisioning_payload(broken, TOKEN)
    assert set(err.value.settings) == {
        "HIKESHI_ANDROID_AGENT_URL",
        "HIKESHI_ANDROID_AGENT_COMPONENT",
        "HIKESHI_ANDROID_AGENT_SIGNING_CERT",
        "HIKESHI_ANDROID_WIFI_SECURITY",
    }
