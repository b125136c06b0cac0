"""Android provisioning settings kept in the database, so the console can set them (issue #19 item 8).

Until now the device-owner QR code was configured only by the Android environment settings
and a restart. The stored row (mdm.ground.models.AndroidProvisioning) now wins field by field; a field it
leaves empty falls back to the environment. `effective_settings` gives the Settings the QR code is
made with; `provisioning_problems` says, per console field, what still makes a code unusable, and
`require_usable_provisioning` refuses to create an Android enrollment token until nothing does.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session

from enrollment import android_qr
from enrollment.tokens import TokenError
from mdm.ground.audit import Actor, record_event
from mdm.ground.config import Settings
from mdm.ground.models import AndroidProvisioning
from mdm.ground.secretbox import SecretBoxError, unseal
from mdm.ground.settings_row import SealedSecret, apply_settings
from mdm.ground.x509util import load_der_certificate, load_pem_certificate

SEALED_AS = "android-provisioning-wifi-password"
SEALED_PASSWORD = SealedSecret("wifi_password_sealed", SEALED_AS, "wifi_password")
ROW_ID = 1


@dataclass(frozen=True)
class Field:
    name: str  # the column and the console's form field
    setting: str  # the Settings attribute it overrides
    env: str  # the environment variable it falls back to
    limit: int


FIELDS = (
    Field("agent_package", "android_agent_package", "HIKESHI_ANDROID_AGENT_PACKAGE", 255),
    Field("agent_component", "android_agent_component", "HIKESHI_ANDROID_AGENT_COMPONENT", 255),
    Field("agent_download_url", "android_agent_download_url", "HIKESHI_ANDROID_AGENT_URL", 1024),
    Field(
        "agent_signature_checksum", "android_agent_signature_checksum", "HIKESHI_ANDROID_AGENT_CHECKSUM", 64
    ),
    Field("wifi_ssid", "android_provisioning_wifi_ssid", "HIKESHI_ANDROID_WIFI_SSID", 64),
    Field("wifi_security", "android_provisioning_wifi_security", "HIKESHI_ANDROID_WIFI_SECURITY", 8),
    Field("locale", "android_provisioning_locale", "HIKESHI_ANDROID_LOCALE", 16),
    Field("time_zone", "android_provisioning_time_zone", "HIKESHI_ANDROID_TIME_ZONE", 64),
)
BY_NAME = {f.name: f for f in FIELDS}
# android_qr names a problem by its environment variable; the console names its own field.
FIELD_OF_ENV = {f.env: f.name for f in FIELDS} | {
    "HIKESHI_ANDROID_AGENT_SIGNING_CERT": "agent_signature_checksum",
    "HIKESHI_ANDROID_WIFI_PASSWORD": "wifi_password",
}


class ProvisioningInputError(ValueError):
    """Refused input; `fields` maps each form field to its messages."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in sorted(fields.items())))
        self.fields = fields


def stored_row(session: Session) -> AndroidProvisioning | None:
    return session.get(AndroidProvisioning, ROW_ID)


def effective_settings(session: Session, settings: Settings) -> Settings:
    """`settings` with every value stored in the console in place of the environment's."""
    row = stored_row(session)
    if row is None:
        return settings
    changes: dict[str, Any] = {}
    for field in FIELDS:
        value = getattr(row, field.name)
        if value is not None:
            changes[field.setting] = value
    if row.wifi_password_sealed is not None:
        try:
            changes["android_provisioning_wifi_password"] = unseal(
                settings.secret_key, SEALED_AS, row.wifi_password_sealed
            ).decode("utf-8")
        except SecretBoxError:
            # A password sealed under another instance secret cannot be used; say so as missing.
            changes["android_provisioning_wifi_password"] = None
    if row.agent_signature_checksum is not None:
        # A checksum typed in the console replaces a certificate file named by the environment.
        changes["android_agent_signing_cert_file"] = None
    return replace(settings, **changes)


def provisioning_problems(settings: Settings) -> dict[str, str]:
    """Console field → why the provisioning QR code cannot be made now (empty: it can)."""
    try:
        android_qr.provisioning_payload(settings, "check")
    except android_qr.ProvisioningNotConfigured as exc:
        return {FIELD_OF_ENV.get(name, name): why for name, why in exc.settings.items()}
    return {}


# The fields as the console's settings page names them, for messages every door shows.
FIELD_LABELS = {
    "agent_package": ("エージェントのパッケージ名", "agent package"),
    "agent_component": ("管理コンポーネント", "admin component"),
    "agent_download_url": ("エージェントAPKのURL", "agent APK URL"),
    "agent_signature_checksum": ("署名証明書のチェックサム", "signing certificate checksum"),
    "wifi_ssid": ("Wi-Fi SSID", "Wi-Fi SSID"),
    "wifi_security": ("Wi-Fi の暗号化方式", "Wi-Fi security"),
    "wifi_password": ("Wi-Fi パスワード", "Wi-Fi password"),
    "locale": ("言語", "locale"),
    "time_zone": ("タイムゾーン", "time zone"),
}


def require_usable_provisioning(session: Session, settings: Settings) -> None:
    """Refuse (TokenError on `platform`) an Android token whose QR code could not be made, naming
    what is missing in Japanese and English (every door shows the message as it is)."""
    problems = provisioning_problems(effective_settings(session, settings))
    if problems:
        names = sorted(problems)
        ja = "、".join(FIELD_LABELS.get(n, (n, n))[0] for n in names)
        en = ", ".join(FIELD_LABELS.get(n, (n, n))[1] for n in names)
        raise TokenError(
            {
                "platform": [
                    "Android の端末登録QRコードを作れないため、トークンを作成しません。"
                    f"設定画面で入力してください: {ja}"
                    f" / Android provisioning is not usable, so no token was made; set in the console's "
                    f"settings: {en}"
                ]
            }
        )


def checksum_of_certificate(data: bytes) -> str:
    """The signature checksum of an agent signing certificate (PEM or DER); ValueError otherwise."""
    try:
        cert = load_pem_certificate(data) if b"-----BEGIN" in data else load_der_certificate(data)
    except ValueError as exc:
        raise ProvisioningInputError({"signing_certificate": ["not a PEM or DER certificate"]}) from exc
    return android_qr.signature_checksum(cert)


def _check(values: dict[str, str | None]) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}
    for name, value in values.items():
        field = BY_NAME[name]
        if value is None:
            continue
        if len(value) > field.limit or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
            problems[name] = [f"one line of at most {field.limit} characters"]
    url = values.get("agent_download_url")
    if url is not None and "agent_download_url" not in problems and not url.startswith("https://"):
        problems["agent_download_url"] = ["must be the https:// address of the agent APK"]
    checksum = values.get("agent_signature_checksum")
    if checksum is not None:
        try:
            raw = base64.urlsafe_b64decode(checksum.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raw = b""
        if len(raw) != 32:
            problems["agent_signature_checksum"] = [
                "must be the URL-safe base64 of the SHA-256 of the signing certificate (44 characters)"
            ]
    security = values.get("wifi_security")
    if security is not None and security not in android_qr.WIFI_SECURITY_TYPES:
        problems["wifi_security"] = ["one of " + ", ".join(android_qr.WIFI_SECURITY_TYPES)]
    package, component = values.get("agent_package"), values.get("agent_component")
    if component is not None and package is not None and not component.startswith(package + "/"):
        problems["agent_component"] = [f"must be {package}/<receiver class>"]
    return problems


def save_provisioning(
    session: Session,
    settings: Settings,
    actor: Actor,
    values: dict[str, str | None],
    *,
    wifi_password: str | None = None,
    clear_wifi_password: bool = False,
) -> list[str]:
    """Store the console's values (None: fall back to the environment); audited without the
    password. Returns the names of the fields that changed. Never commits."""
    unknown = sorted(set(values) - set(BY_NAME))
    if unknown:
        raise ProvisioningInputError({name: ["unknown field"] for name in unknown})
    clean = {
        name: (value.strip() or None) if isinstance(value, str) else None for name, value in values.items()
    }
    if clean.get("wifi_security"):
        clean["wifi_security"] = clean["wifi_security"].upper()  # type: ignore[union-attr]
    problems = _check(clean)
    if wifi_password is not None and (len(wifi_password) > 63 or "\x00" in wifi_password):
        problems["wifi_password"] = ["at most 63 characters"]
    if problems:
        raise ProvisioningInputError(problems)
    row = stored_row(session)
    if row is None:
        row = AndroidProvisioning(id=ROW_ID)
        session.add(row)
    changed = apply_settings(
        row,
        clean,
        secret_key=settings.secret_key,
        sealed=SEALED_PASSWORD,
        secret=wifi_password,
        clear_secret=clear_wifi_password,
        changed_by=actor.name,
    )
    if not changed:
        return []
    session.flush()
    details: dict[str, Any] = {name: clean[name] for name in changed if name in clean}
    if "wifi_password" in changed:
        # A boolean, never the value: the audit trail redacts whatever a "password" key holds.
        details["wifi_password_stored"] = row.wifi_password_sealed is not None
    record_event(session, actor, "android.provisioning_changed", "settings", "android_provisioning", details)
    return changed


@dataclass(frozen=True)
class FieldView:
    name: str
    env: str
    stored: str | None
    from_environment: str | None
    effective: str | None


def settings_view(session: Session, settings: Settings) -> list[FieldView]:
    """Per field: what the console stored, what the environment says, and what the QR code uses."""
    row = stored_row(session)
    effective = effective_settings(session, settings)
    out = []
    for field in FIELDS:
        env_value = getattr(settings, field.setting)
        if field.name == "agent_signature_checksum" and env_value is None:
            try:
                env_value = android_qr.agent_checksum(settings)
            except (OSError, ValueError):
                env_value = None
        out.append(
            FieldView(
                field.name,
                field.env,
                getattr(row, field.name) if row is not None else None,
                env_value,
                android_qr.agent_checksum(effective)
                if field.name == "agent_signature_checksum" and _readable(effective)
                else getattr(effective, field.setting),
            )
        )
    return out


def _readable(settings: Settings) -> bool:
    try:
        android_qr.agent_checksum(settings)
    except (OSError, ValueError):
        return False
    return True


def wifi_password_state(session: Session, settings: Settings) -> str:
    """ "stored", "environment" or "none": where the Wi-Fi password comes from (never the value)."""
    row = stored_row(session)
    if row is not None and row.wifi_password_sealed is not None:
        return "stored"
    return "environment" if settings.android_provisioning_wifi_password else "none"
