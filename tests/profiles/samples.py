"""Spec builders and a test PKI shared by the profile tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from mdm.ground import clock
from profiles.rendering import RenderContext
from tests.support.pki import make_ca, pem, rsa_key

SCEP_URL = "https://mdm.test.invalid/scep"


def station_wifi(**overrides: Any) -> dict[str, Any]:
    """EAP-TLS station Wi-Fi settings; an override of None removes that setting."""
    settings = {
        "ssid": "FD-STATION",
        "security": "wpa2_enterprise",
        "eap_type": "EAP-TLS",
        "certificate_source": "enrollment_identity",
        "trusted_server_names": ["radius.fd.example.jp"],
        "trust_builtin_ca": True,
    }
    settings.update(overrides)
    return {k: v for k, v in settings.items() if v is not None}


def spec_with(*payloads: dict[str, Any], identifier: str = "jp.example.fd.test") -> dict[str, Any]:
    return {"identifier": identifier, "name_ja": "テスト", "name_en": "Test", "payloads": list(payloads)}


def intermediate_ca(root: x509.Certificate, root_key: Any, name: str) -> str:
    key = rsa_key(f"intermediate:{name}")
    now = clock.now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    return pem(cert).decode()


def builtin_ca_pem() -> str:
    cert, _ = make_ca("Hikeshi Built-in CA")
    return pem(cert).decode()


def render_context(**overrides: Any) -> RenderContext:
    values: dict[str, Any] = {
        "scep_url": SCEP_URL,
        "scep_challenge": "one-time-challenge",
        "ca_certificate_pem": builtin_ca_pem(),
    }
    values.update(overrides)
    return RenderContext(**values)


def every_setting_spec() -> dict[str, Any]:
    """A profile that uses every payload kind and nearly every setting."""
    radius_root, radius_root_key = make_ca("RADIUS Root CA")
    radius_root_pem = pem(radius_root).decode()
    intermediate = intermediate_ca(radius_root, radius_root_key, "RADIUS Issuing CA")
    other_root, _ = make_ca("Other Root CA")
    return spec_with(
        {
            "kind": "restrictions",
            "settings": {
                "allow_camera": False,
                "allow_screenshots": False,
                "allow_app_installation": False,
                "allow_app_removal": False,
                "allow_app_store": False,
                "allow_in_app_purchases": False,
                "allow_airdrop": False,
                "allow_bluetooth_modification": False,
                "allow_account_modification": False,
                "allow_erase_content_and_settings": False,
                "usb_data_access": "no_data",
                "app_allow_list": [
                    {
                        "name": "地図",
                        "bundle_id": "com.apple.Maps",
                        "package_name": "com.google.android.apps.maps",
                    },
                    {"name": "iOS only", "bundle_id": "jp.example.fd.ios-only"},
                    {"name": "Android only", "package_name": "jp.example.fd.android_only"},
                ],
                "required_apps": [
                    {
                        "name": "搬送支援",
                        "bundle_id": "jp.example.fd.hanso",
                        "package_name": "jp.example.fd.hanso",
                    }
                ],
            },
        },
        {
            "kind": "certificates",
            "key": "radius-ca",
            "settings": {"certificates": [radius_root_pem, intermediate]},
        },
        {
            "kind": "wifi",
            "key": "station",
            "settings": station_wifi(
                security="wpa3_enterprise",
                certificate_source="scep",
                scep={
                    "url": "https://scep.fd.example.jp/scep",
                    "key_size": 4096,
                    "common_name": "tablet-001",
                },
                trust_builtin_ca=None,
                trusted_certificates_payload="radius-ca",
                trusted_root_certificates=[pem(other_root).decode()],
                trusted_server_names=["radius.fd.example.jp", "*.radius.fd.example.jp", "wpa.*.example.jp"],
                identity="tablet-001",
                hidden=True,
                proxy={"type": "manual", "host": "proxy.fd.example.jp", "port": 8080},
            ),
        },
        {
            "kind": "wifi",
            "settings": {
                "ssid": "FD-GUEST",
                "security": "wpa3_personal",
                "password": "correct horse battery",
                "auto_join": False,
                "proxy": {"type": "auto", "pac_url": "http://wpad.fd.example.jp/proxy.pac"},
            },
        },
        {"kind": "wifi", "settings": station_wifi(ssid="FD-NOPROXY", proxy={"type": "none"})},
        {
            "kind": "passcode",
            "settings": {
                "min_length": 8,
                "require_alphanumeric": True,
                "min_complex_chars": 1,
                "max_age_days": 90,
                "history": 5,
                "auto_lock_minutes": 3,
                "max_failed_attempts": 10,
            },
        },
        {
            "kind": "web_content_filter",
            "settings": {
                "allowed_urls": [
                    {"url": "https://www.fdma.go.jp/", "title": "消防庁"},
                    {"url": "https://example.jp/"},
                ]
            },
        },
    )
