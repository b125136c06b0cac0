"""Settings from environment variables, with an instance folder holding generated secrets.

Every variable is documented in README.md ("Configuration"). Secrets generated on first run are
written to the instance folder with mode 0600 and reused afterwards.
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_int(name: str, default: int) -> int:
    value = _env(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be a whole number, not {value!r}") from exc


def _env_positive(name: str, default: int) -> int:
    value = _env_int(name, default)
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value


def _env_path(name: str) -> Path | None:
    value = _env(name)
    return Path(value).expanduser().resolve() if value else None


def read_or_create_secret(path: Path, nbytes: int = 32) -> str:
    """Read a secret file, creating it with mode 0600 when missing."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def keep_private(folder: Path) -> None:
    """Make the instance folder 0700 when it is not. A folder that is already right is not
    touched, and one that cannot be changed (read-only mount, owned by another user) only
    warns: read-only commands (audit verify, devices list) must still work there."""
    try:
        if stat.S_IMODE(folder.stat().st_mode) == 0o700:
            return
        os.chmod(folder, 0o700)
    except OSError as exc:
        # On stderr, not only in a log: a CLI command has no logging set up.
        print(
            f"WARNING: cannot make {folder} private (mode 0700): {exc.strerror or exc}; continuing",
            file=sys.stderr,
        )


@dataclass(frozen=True)
class Settings:
    instance_path: Path
    database_url: str
    secret_key: str
    public_url: str = "http://127.0.0.1:8000"
    apns_url: str = "https://api.push.apple.com"
    apns_ca_file: str | None = None
    apns_timeout_seconds: float = 10.0
    apns_expiration_seconds: int = 7 * 24 * 3600
    device_ca_file: str | None = None
    client_cert_header: str | None = None
    max_device_body_bytes: int = 1024 * 1024
    # /mdm/connect: answers up to the first limit are verified, parsed and stored; larger ones up
    # to the second are only streamed through the signature check, so that a verified device's
    # command can be failed instead of being offered again forever (see mdm/apple/answers.py).
    max_command_answer_bytes: int = 32 * 1024 * 1024
    max_command_answer_read_bytes: int = 256 * 1024 * 1024
    command_expiry_days: int = 7
    push_enabled: bool = True
    # Console sessions end after this much inactivity, and in any case after session_max_hours.
    session_idle_minutes: int = 30
    session_max_hours: int = 12
    # Audit events older than this are purged by a recorded, chained purge event; 0 keeps all.
    audit_retention_days: int = 1825
    # Enrollment: device identity lifetime, renewal window, SCEP challenge lifetime, names shown.
    identity_cert_days: int = 365
    identity_renewal_days: int = 30
    scep_challenge_minutes: int = 60
    organization_name: str = "Hikeshi MDM"
    # Inventory, compliance, alerts and the scheduler (issue 7). Retention in days; 0 keeps all.
    inventory_interval_hours: int = 4
    inventory_history_retention_days: int = 365
    command_result_retention_days: int = 180
    alert_retention_days: int = 365
    webhook_timeout_seconds: float = 10.0
    webhook_max_attempts: int = 8
    scheduler_lock_poll_seconds: float = 15.0
    scheduler_tick_seconds: int = 60
    # Durable push (issue 16): a waiting command's device is woken again after this many minutes,
    # doubling each time, at most push_repush_max times; an APNs outage longer than
    # apns_outage_alert_minutes raises an alert; /readyz wants this much free disk.
    push_repush_minutes: int = 15
    push_repush_max: int = 6
    apns_outage_alert_minutes: int = 10
    readyz_min_free_mb: int = 100
    # Alert e-mail through SMTP; disabled while smtp_host or alert_email_to is empty.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "hikeshi@localhost"
    alert_email_to: tuple[str, ...] = ()
    # Scheduled backups (issue 8): off while backup_directory is unset. The directory is meant to be
    # off-site (a mounted share); the key file must live elsewhere, never beside the backups.
    backup_directory: Path | None = None
    backup_key_file: Path | None = None
    backup_generations: int = 48
    backup_interval_minutes: int = 60
    # Android agent (issue 9): what the device-owner provisioning QR code installs, and how the
    # agent talks to the server. The checksum is the URL-safe base64 SHA-256 of the agent's
    # signing certificate; when unset it is computed from android_agent_signing_cert_file.
    android_agent_package: str = "jp.hikeshi.agent"
    android_agent_component: str = "jp.hikeshi.agent/.HikeshiAdminReceiver"
    android_agent_download_url: str | None = None
    android_agent_signature_checksum: str | None = None
    android_agent_signing_cert_file: str | None = None
    android_provisioning_wifi_ssid: str | None = None
    android_provisioning_wifi_security: str | None = None
    android_provisioning_wifi_password: str | None = None
    android_provisioning_locale: str = "ja_JP"
    android_provisioning_time_zone: str = "Asia/Tokyo"
    android_poll_interval_seconds: int = 900
    android_long_poll_seconds: int = 55
    # Each held long poll occupies a server thread: at most this many per process (503 beyond).
    android_max_long_polls: int = 8
    android_signature_max_skew_seconds: int = 300
    # A signed request dated later than now by more than this is refused (clock ahead or forged).
    android_signature_future_skew_seconds: int = 30
    # Android wake-up over MQTT (mdm/push/mqtt.py, docs/mqtt-wakeup.md); off while mqtt_url is unset.
    mqtt_url: str | None = None  # mqtt://host[:1883] or mqtts://host[:8883]
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_ca_file: str | None = None  # CA bundle for mqtts://; system trust when unset
    mqtt_topic_prefix: str = "hikeshi/devices"  # wake-ups go to <prefix>/<device id>/wake
    mqtt_device_url: str | None = None  # the broker as agents reach it, when not as the server does
    # http:// public URLs other than loopback are refused unless this is set (mdm/transport.py).
    dev_insecure_http: bool = False
    # gunicorn's request-line limit: SCEP GET PKIOperation of a 4096-bit request is about 5.6 KB.
    max_request_line: int = 8190
    # Networks webhooks may reach although they are loopback, private, link-local... (CIDR list).
    webhook_allow_networks: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, *, generate_secret: bool = True, **overrides: Any) -> Settings:
        """Settings from the environment. `generate_secret=False` never writes a secret_key (a
        restore brings its own: a refused one must leave the target folder as it was)."""
        instance = Path(_env("HIKESHI_INSTANCE_PATH", "instance") or "instance").resolve()
        instance.mkdir(parents=True, exist_ok=True)
        keep_private(instance)
        secret = _env("HIKESHI_SECRET_KEY")
        if not secret:
            if generate_secret or (instance / "secret_key").exists():
                secret = read_or_create_secret(instance / "secret_key")
            else:
                secret = ""
        database_url = _env("HIKESHI_DATABASE_URL") or f"sqlite:///{instance / 'hikeshi.db'}"
        settings = cls(
            instance_path=instance,
            database_url=database_url,
            secret_key=secret,
            public_url=(_env("HIKESHI_PUBLIC_URL", "http://127.0.0.1:8000") or "").rstrip("/"),
            apns_url=(_env("HIKESHI_APNS_URL", "https://api.push.apple.com") or "").rstrip("/"),
            apns_ca_file=_env("HIKESHI_APNS_CA_FILE"),
            apns_timeout_seconds=float(_env("HIKESHI_APNS_TIMEOUT", "10") or "10"),
            device_ca_file=_env("HIKESHI_DEVICE_CA_FILE"),
            client_cert_header=_env("HIKESHI_CLIENT_CERT_HEADER"),
            max_device_body_bytes=_env_int("HIKESHI_MAX_DEVICE_BODY", 1024 * 1024),
            max_command_answer_bytes=_env_int("HIKESHI_MAX_COMMAND_ANSWER", 32 * 1024 * 1024),
            max_command_answer_read_bytes=_env_int("HIKESHI_MAX_COMMAND_ANSWER_READ", 256 * 1024 * 1024),
            command_expiry_days=_env_positive("HIKESHI_COMMAND_EXPIRY_DAYS", 7),
            push_enabled=(_env("HIKESHI_PUSH_ENABLED", "1") or "1") not in ("0", "false", "no"),
            dev_insecure_http=(_env("HIKESHI_DEV_INSECURE_HTTP", "0") or "0") in ("1", "true", "yes"),
            max_request_line=_env_int("HIKESHI_MAX_REQUEST_LINE", 8190),
            webhook_allow_networks=tuple(
                part.strip()
                for part in (_env("HIKESHI_WEBHOOK_ALLOW_NETWORKS", "") or "").split(",")
                if part.strip()
            ),
            session_idle_minutes=_env_int("HIKESHI_SESSION_IDLE_MINUTES", 30),
            session_max_hours=_env_int("HIKESHI_SESSION_MAX_HOURS", 12),
            audit_retention_days=_env_int("HIKESHI_AUDIT_RETENTION_DAYS", 1825),
            identity_cert_days=_env_int("HIKESHI_IDENTITY_CERT_DAYS", 365),
            identity_renewal_days=_env_int("HIKESHI_IDENTITY_RENEWAL_DAYS", 30),
            scep_challenge_minutes=_env_int("HIKESHI_SCEP_CHALLENGE_MINUTES", 60),
            organization_name=_env("HIKESHI_ORGANIZATION", "Hikeshi MDM") or "Hikeshi MDM",
            inventory_interval_hours=_env_int("HIKESHI_INVENTORY_INTERVAL_HOURS", 4),
            inventory_history_retention_days=_env_int("HIKESHI_INVENTORY_HISTORY_RETENTION_DAYS", 365),
            command_result_retention_days=_env_int("HIKESHI_COMMAND_RESULT_RETENTION_DAYS", 180),
            alert_retention_days=_env_int("HIKESHI_ALERT_RETENTION_DAYS", 365),
            webhook_timeout_seconds=float(_env("HIKESHI_WEBHOOK_TIMEOUT", "10") or "10"),
            webhook_max_attempts=_env_int("HIKESHI_WEBHOOK_MAX_ATTEMPTS", 8),
            scheduler_lock_poll_seconds=float(_env("HIKESHI_SCHEDULER_LOCK_POLL", "15") or "15"),
            scheduler_tick_seconds=_env_int("HIKESHI_SCHEDULER_TICK_SECONDS", 60),
            push_repush_minutes=_env_int("HIKESHI_PUSH_REPUSH_MINUTES", 15),
            push_repush_max=_env_int("HIKESHI_PUSH_REPUSH_MAX", 6),
            apns_outage_alert_minutes=_env_int("HIKESHI_APNS_OUTAGE_ALERT_MINUTES", 10),
            readyz_min_free_mb=_env_int("HIKESHI_READYZ_MIN_FREE_MB", 100),
            smtp_host=_env("HIKESHI_SMTP_HOST"),
            smtp_port=_env_int("HIKESHI_SMTP_PORT", 587),
            smtp_starttls=(_env("HIKESHI_SMTP_STARTTLS", "1") or "1") not in ("0", "false", "no"),
            smtp_username=_env("HIKESHI_SMTP_USERNAME"),
            smtp_password=_env("HIKESHI_SMTP_PASSWORD"),
            smtp_from=_env("HIKESHI_SMTP_FROM", "hikeshi@localhost") or "hikeshi@localhost",
            android_agent_package=_env("HIKESHI_ANDROID_AGENT_PACKAGE", "jp.hikeshi.agent") or "",
            android_agent_component=_env(
                "HIKESHI_ANDROID_AGENT_COMPONENT", "jp.hikeshi.agent/.HikeshiAdminReceiver"
            )
            or "",
            android_agent_download_url=_env("HIKESHI_ANDROID_AGENT_URL"),
            android_agent_signature_checksum=_env("HIKESHI_ANDROID_AGENT_CHECKSUM"),
            android_agent_signing_cert_file=_env("HIKESHI_ANDROID_AGENT_SIGNING_CERT"),
            android_provisioning_wifi_ssid=_env("HIKESHI_ANDROID_WIFI_SSID"),
            android_provisioning_wifi_security=_env("HIKESHI_ANDROID_WIFI_SECURITY"),
            android_provisioning_wifi_password=_env("HIKESHI_ANDROID_WIFI_PASSWORD"),
            android_provisioning_locale=_env("HIKESHI_ANDROID_LOCALE", "ja_JP") or "ja_JP",
            android_provisioning_time_zone=_env("HIKESHI_ANDROID_TIME_ZONE", "Asia/Tokyo") or "Asia/Tokyo",
            android_poll_interval_seconds=_env_int("HIKESHI_ANDROID_POLL_SECONDS", 900),
            android_long_poll_seconds=_env_int("HIKESHI_ANDROID_LONG_POLL_SECONDS", 55),
            android_max_long_polls=_env_int("HIKESHI_ANDROID_MAX_LONG_POLLS", 8),
            android_signature_max_skew_seconds=_env_int("HIKESHI_ANDROID_SIGNATURE_SKEW_SECONDS", 300),
            android_signature_future_skew_seconds=_env_int(
                "HIKESHI_ANDROID_SIGNATURE_FUTURE_SKEW_SECONDS", 30
            ),
            alert_email_to=tuple(
                a.strip() for a in (_env("HIKESHI_ALERT_EMAIL_TO", "") or "").split(",") if a.strip()
            ),
            mqtt_url=_env("HIKESHI_MQTT_URL"),
            mqtt_username=_env("HIKESHI_MQTT_USERNAME"),
            mqtt_password=_env("HIKESHI_MQTT_PASSWORD"),
            mqtt_ca_file=_env("HIKESHI_MQTT_CA_FILE"),
            mqtt_topic_prefix=(_env("HIKESHI_MQTT_TOPIC_PREFIX", "hikeshi/devices") or "").strip("/"),
            mqtt_device_url=_env("HIKESHI_MQTT_DEVICE_URL"),
            backup_directory=_env_path("HIKESHI_BACKUP_DIR"),
            backup_key_file=_env_path("HIKESHI_BACKUP_KEY_FILE"),
            backup_generations=_env_int("HIKESHI_BACKUP_GENERATIONS", 48),
            backup_interval_minutes=_env_int("HIKESHI_BACKUP_INTERVAL_MINUTES", 60),
        )
        return replace(settings, **overrides) if overrides else settings
