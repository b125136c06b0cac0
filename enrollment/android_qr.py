"""Android Enterprise device-owner provisioning: the QR code a factory-new tablet scans.

Tapping the welcome screen six times opens the QR reader of Android's setup wizard. The code is
a JSON object of `android.app.extra.PROVISIONING_*` extras: where to download the Hikeshi agent,
the checksum of the agent's signing certificate (URL-safe base64 of its SHA-256, with padding,
as DevicePolicyManager#EXTRA_PROVISIONING_DEVICE_ADMIN_SIGNATURE_CHECKSUM asks), and the admin
extras bundle the agent receives once it is device owner: the server URL and the enrollment
token it enrolls with (mdm.doors.android, docs/android-agent-protocol.md). No Google service is needed.

The token secret is in the code, so like the Apple QR it is shown only when the token is made,
and the printable sheet carries the secret in its URL.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from enrollment.qr import QUIET_ZONE, make_qr, scalable_svg
from mdm.ground.config import Settings
from mdm.ground.x509util import load_der_certificate, load_pem_certificate

EXTRA = "android.app.extra."
COMPONENT_NAME = EXTRA + "PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME"
DOWNLOAD_LOCATION = EXTRA + "PROVISIONING_DEVICE_ADMIN_PACKAGE_DOWNLOAD_LOCATION"
SIGNATURE_CHECKSUM = EXTRA + "PROVISIONING_DEVICE_ADMIN_SIGNATURE_CHECKSUM"
LEAVE_ALL_SYSTEM_APPS_ENABLED = EXTRA + "PROVISIONING_LEAVE_ALL_SYSTEM_APPS_ENABLED"
WIFI_SSID = EXTRA + "PROVISIONING_WIFI_SSID"
WIFI_SECURITY_TYPE = EXTRA + "PROVISIONING_WIFI_SECURITY_TYPE"
WIFI_PASSWORD = EXTRA + "PROVISIONING_WIFI_PASSWORD"
TIME_ZONE = EXTRA + "PROVISIONING_TIME_ZONE"
LOCALE = EXTRA + "PROVISIONING_LOCALE"
ADMIN_EXTRAS_BUNDLE = EXTRA + "PROVISIONING_ADMIN_EXTRAS_BUNDLE"

# Keys of the admin extras bundle, read by the agent (docs/android-agent-protocol.md).
EXTRA_SERVER_URL = "hikeshi.server_url"
EXTRA_ENROLLMENT_TOKEN = "hikeshi.enrollment_token"  # noqa: S105

WIFI_SECURITY_TYPES = ("NONE", "WEP", "WPA", "EAP")


class ProvisioningNotConfigured(ValueError):
    """A setting the QR code needs is missing or wrong; `settings` names the variables."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {why}" for name, why in problems.items()))
        self.settings = problems


def signature_checksum(certificate: x509.Certificate | bytes) -> str:
    """URL-safe base64 (padded) of the SHA-256 of a signing certificate (DER bytes or object)."""
    der = certificate if isinstance(certificate, bytes) else certificate.public_bytes(Encoding.DER)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode("ascii")


def load_signing_certificate(path: str | Path) -> x509.Certificate:
    data = Path(path).read_bytes()
    return load_pem_certificate(data) if b"-----BEGIN" in data else load_der_certificate(data)


def agent_checksum(settings: Settings) -> str | None:
    if settings.android_agent_signature_checksum:
        return settings.android_agent_signature_checksum.strip()
    if settings.android_agent_signing_cert_file:
        return signature_checksum(load_signing_certificate(settings.android_agent_signing_cert_file))
    return None


def provisioning_payload(settings: Settings, token_secret: str) -> dict[str, Any]:
    """The provisioning extras for an android enrollment token's secret; ProvisioningNotConfigured."""
    problems: dict[str, str] = {}
    package = (settings.android_agent_package or "").strip()
    component = (settings.android_agent_component or "").strip()
    if not package:
        problems["HIKESHI_ANDROID_AGENT_PACKAGE"] = "not set"
    if not component.startswith(package + "/") or component == package + "/":
        problems["HIKESHI_ANDROID_AGENT_COMPONENT"] = f"must be {package or '<package>'}/<receiver class>"
    url = (settings.android_agent_download_url or "").strip()
    if not url.startswith("https://"):
        problems["HIKESHI_ANDROID_AGENT_URL"] = "must be the https:// address of the agent APK"
    try:
        checksum = agent_checksum(settings)
    except (OSError, ValueError) as exc:
        checksum = None
        problems["HIKESHI_ANDROID_AGENT_SIGNING_CERT"] = (
            f"cannot read the certificate ({exc.__class__.__name__})"
        )
    if not checksum and "HIKESHI_ANDROID_AGENT_SIGNING_CERT" not in problems:
        problems["HIKESHI_ANDROID_AGENT_CHECKSUM"] = "set it, or HIKESHI_ANDROID_AGENT_SIGNING_CERT"
    security = (settings.android_provisioning_wifi_security or "").strip().upper()
    if security and security not in WIFI_SECURITY_TYPES:
        problems["HIKESHI_ANDROID_WIFI_SECURITY"] = "one of " + ", ".join(WIFI_SECURITY_TYPES)
    if problems:
        raise ProvisioningNotConfigured(problems)
    payload: dict[str, Any] = {
        COMPONENT_NAME: component,
        DOWNLOAD_LOCATION: url,
        SIGNATURE_CHECKSUM: checksum,
        # Field tablets keep the maker's camera, dialer and settings apps; the policy restricts them.
        LEAVE_ALL_SYSTEM_APPS_ENABLED: True,
        TIME_ZONE: settings.android_provisioning_time_zone,
        LOCALE: settings.android_provisioning_locale,
    }
    ssid = settings.android_provisioning_wifi_ssid
    if ssid:
        payload[WIFI_SSID] = ssid
        payload[WIFI_SECURITY_TYPE] = security or (
            "WPA" if settings.android_provisioning_wifi_password else "NONE"
        )
        if settings.android_provisioning_wifi_password:
            payload[WIFI_PASSWORD] = settings.android_provisioning_wifi_password
    payload[ADMIN_EXTRAS_BUNDLE] = {
        EXTRA_SERVER_URL: settings.public_url.rstrip("/"),
        EXTRA_ENROLLMENT_TOKEN: token_secret,
    }
    return payload


def provisioning_json(settings: Settings, token_secret: str) -> str:
    """The QR code's text: compact JSON, ASCII only (the setup wizard reads it as bytes)."""
    return json.dumps(provisioning_payload(settings, token_secret), separators=(",", ":"), ensure_ascii=True)


def qr_png(settings: Settings, token_secret: str, *, scale: int = 6) -> bytes:
    out = io.BytesIO()
    make_qr(provisioning_json(settings, token_secret)).save(out, kind="png", scale=scale, border=QUIET_ZONE)
    return out.getvalue()


def qr_svg_inline(settings: Settings, token_secret: str, *, scale: int = 4) -> str:
    """An <svg> element (segno writes only path data: the secret never appears as text)."""
    return scalable_svg(
        make_qr(provisioning_json(settings, token_secret)), scale=scale, title="Android provisioning QR code"
    )
