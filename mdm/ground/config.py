"""Settings from environment variables, with an instance folder holding generated secrets.

Every variable Hikeshi reads is one `Setting` in `TABLE` below (name, type, default, meaning),
and nothing outside this module reads one by name: `Settings.from_env` is built from the table,
and the few read where they are used (logging, the CLI) call `Setting.read`. README.md's
"Configuration" table is checked against `TABLE` both ways (tests/core/test_settings_table.py).
Secrets generated on first run are written to the instance folder with mode 0600 and reused.
"""

from __future__ import annotations

import math
import os
import secrets
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


class SettingError(ValueError):
    """A variable with a value Hikeshi refuses; the message is one line that starts with its name
    (mdm.roots.cli_errors prints it as it is)."""


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 60 else raw[:57] + "...")


# The types: each turns the variable's text into the value, or refuses it naming the variable.
def text(name: str, raw: str) -> str:
    return raw


def url(name: str, raw: str) -> str:
    return raw.rstrip("/")


def topic(name: str, raw: str) -> str:
    return raw.strip("/")


def whole(name: str, raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise SettingError(f"{name} must be a whole number, not {_shown(raw)}") from None


def positive(name: str, raw: str) -> int:
    value = whole(name, raw)
    if value < 1:
        raise SettingError(f"{name} must be at least 1, not {value}")
    return value


def seconds(name: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise SettingError(f"{name} must be a number of seconds, not {_shown(raw)}") from None
    if not math.isfinite(value) or value <= 0:
        raise SettingError(f"{name} must be a number of seconds above 0, not {_shown(raw)}")
    return value


_YES = ("1", "true", "yes", "on")
_NO = ("0", "false", "no", "off")


def flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _YES:
        return True
    if value in _NO:
        return False
    raise SettingError(f"{name} must be 1 or 0 (also yes/no, true/false, on/off), not {_shown(raw)}")


def folder(name: str, raw: str) -> Path:
    return Path(raw).expanduser().resolve()


def words(name: str, raw: str) -> tuple[str, ...]:
    """A comma-separated list."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def one_of(*choices: str) -> Callable[[str, str], str]:
    def choice(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise SettingError(f"{name} must be one of {', '.join(choices)}, not {_shown(raw)}")
        return value

    return choice


def log_level_name(name: str, raw: str) -> str:
    value = raw.strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise SettingError(f"{name} must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not {_shown(raw)}")
    return value


@dataclass(frozen=True)
class Setting:
    """One environment variable. `default` is text as an operator would write it (parsed like a
    set value); None means unset, or a default derived at start (see `Settings.from_env`)."""

    name: str
    type: Callable[[str, str], Any]
    default: str | None
    # The Settings field it fills; None for the few read where they are used.
    attribute: str | None
    meaning: str

    def read(self, environ: Mapping[str, str] | None = None) -> Any:
        """The value: the variable's when set and not empty, else the default; None when both are unset."""
        raw = (os.environ if environ is None else environ).get(self.name) or self.default
        return None if raw is None else self.type(self.name, raw)


# fmt: off
# Read where they are used, not in Settings: logging starts before the settings are read, the
# scheduler switch is a `hikeshi serve` option, the passphrase is asked for by one command only.
LOG_FORMAT = Setting("HIKESHI_LOG_FORMAT", one_of("text", "json"), "text", None,
                     "log format of every process: text lines or json objects")
LOG_LEVEL = Setting("HIKESHI_LOG_LEVEL", log_level_name, None, None,
                    "lowest level logged (INFO for serve and scheduler, WARNING for other commands)")
SCHEDULER_IN_SERVE = Setting("HIKESHI_SCHEDULER_IN_SERVE", flag, "1", None,
                             "hikeshi serve also runs the scheduler; 0 where hikeshi scheduler runs apart")
BACKUP_PASSPHRASE = Setting("HIKESHI_BACKUP_PASSPHRASE", text, None, None,
                            "passphrase of hikeshi backup/restore when no --key-file is given")
SECRET_KEY = Setting("HIKESHI_SECRET_KEY", text, None, "secret_key",
                     "instance secret; generated into <instance>/secret_key when unset")

TABLE: tuple[Setting, ...] = (
    Setting("HIKESHI_INSTANCE_PATH", folder, "instance", "instance_path",
            "folder for the SQLite database and generated secrets (mode 0700)"),
    Setting("HIKESHI_DATABASE_URL", text, None, "database_url",
            "SQLAlchemy URL; sqlite:///<instance>/hikeshi.db when unset"),
    SECRET_KEY,
    Setting("HIKESHI_PUBLIC_URL", url, "http://127.0.0.1:8000", "public_url",
            "the URL devices and browsers reach"),
    Setting("HIKESHI_DEV_INSECURE_HTTP", flag, "0", "dev_insecure_http",
            "allow an http:// public URL on a non-loopback host (development lab only)"),
    Setting("HIKESHI_MAX_REQUEST_LINE", whole, "8190", "max_request_line",
            "longest HTTP request line hikeshi serve accepts, in bytes"),
    Setting("HIKESHI_WEBHOOK_ALLOW_NETWORKS", words, "", "webhook_allow_networks",
            "CIDR networks webhooks may reach although they are not public"),
    Setting("HIKESHI_APNS_URL", url, "https://api.push.apple.com", "apns_url", "APNs endpoint"),
    Setting("HIKESHI_APNS_CA_FILE", text, None, "apns_ca_file", "CA bundle that verifies the APNs server"),
    Setting("HIKESHI_APNS_TIMEOUT", seconds, "10", "apns_timeout_seconds", "seconds per push request"),
    Setting("HIKESHI_APNS_CONNECTIONS", positive, "4", "apns_connections",
            "most HTTP/2 connections to APNs per push certificate"),
    Setting("HIKESHI_APNS_STREAMS_PER_CONNECTION", positive, "500", "apns_streams_per_connection",
            "most pushes in flight on one APNs connection"),
    Setting("HIKESHI_PUSH_ENABLED", flag, "1", "push_enabled",
            "0 queues commands without pushing"),
    Setting("HIKESHI_ADE_URL", url, "https://mdmenrollment.apple.com", "ade_url",
            "Apple's device assignment service (ABM)"),
    Setting("HIKESHI_ADE_SYNC_MINUTES", positive, "30", "ade_sync_minutes",
            "minutes between device assignment service syncs"),
    Setting("HIKESHI_VPP_URL", url, "https://vpp.itunes.apple.com/mdm/v2", "vpp_url",
            "Apple's Apps and Books (volume purchase) service"),
    Setting("HIKESHI_VPP_SYNC_MINUTES", positive, "60", "vpp_sync_minutes",
            "minutes between Apps and Books asset syncs"),
    Setting("HIKESHI_ADE_DEVICE_CA_FILE", text, None, "ade_device_ca_file",
            "PEM of the CA chain that signs ADE devices' machine info (default: Apple's, shipped)"),
    Setting("HIKESHI_DEVICE_CA_FILE", text, None, "device_ca_file",
            "extra PEM bundle of CAs trusted to vouch for device identities"),
    Setting("HIKESHI_CLIENT_CERT_HEADER", text, None, "client_cert_header",
            "header in which a TLS-terminating proxy passes the client certificate"),
    Setting("HIKESHI_PUSH_VENDOR_CERT_FILE", text, None, "push_vendor_cert_file",
            "PEM of the MDM vendor certificate with its chain to Apple's root (signs push requests)"),
    Setting("HIKESHI_PUSH_VENDOR_KEY_FILE", text, None, "push_vendor_key_file",
            "PEM private key of the MDM vendor certificate (unencrypted; keep it mode 0600)"),
    Setting("HIKESHI_SERVER_ANCHOR_FILE", text, None, "server_anchor_file",
            "PEM of the private CA behind the server's TLS certificate, carried by enrollment profiles"),
    Setting("HIKESHI_MAX_DEVICE_BODY", whole, "1048576", "max_device_body_bytes",
            "largest device request body in bytes"),
    Setting("HIKESHI_MAX_COMMAND_ANSWER", whole, "33554432", "max_command_answer_bytes",
            "largest Apple command answer parsed and stored"),
    Setting("HIKESHI_MAX_COMMAND_ANSWER_READ", whole, "268435456", "max_command_answer_read_bytes",
            "largest Apple command answer read only to check its signature"),
    Setting("HIKESHI_COMMAND_EXPIRY_DAYS", positive, "7", "command_expiry_days",
            "days an undelivered command waits before it expires"),
    Setting("HIKESHI_SESSION_IDLE_MINUTES", whole, "30", "session_idle_minutes",
            "console session ends after this much inactivity"),
    Setting("HIKESHI_SESSION_MAX_HOURS", whole, "12", "session_max_hours", "console session ends after this"),
    Setting("HIKESHI_AUDIT_RETENTION_DAYS", whole, "1825", "audit_retention_days",
            "audit events kept this long (0 keeps all)"),
    Setting("HIKESHI_IDENTITY_CERT_DAYS", whole, "365", "identity_cert_days", "device identity lifetime"),
    Setting("HIKESHI_IDENTITY_RENEWAL_DAYS", whole, "30", "identity_renewal_days",
            "device identity renewal window"),
    Setting("HIKESHI_SCEP_CHALLENGE_MINUTES", whole, "60", "scep_challenge_minutes",
            "SCEP challenge lifetime"),
    Setting("HIKESHI_ORGANIZATION", text, "Hikeshi MDM", "organization_name",
            "organisation name in profiles"),
    Setting("HIKESHI_INVENTORY_INTERVAL_HOURS", whole, "4", "inventory_interval_hours",
            "inventory refresh interval"),
    Setting("HIKESHI_INVENTORY_HISTORY_RETENTION_DAYS", whole, "365", "inventory_history_retention_days",
            "inventory history kept this long (0 keeps all)"),
    Setting("HIKESHI_COMMAND_RESULT_RETENTION_DAYS", whole, "180", "command_result_retention_days",
            "command results kept this long (0 keeps all)"),
    Setting("HIKESHI_ALERT_RETENTION_DAYS", whole, "365", "alert_retention_days",
            "alerts kept this long (0 keeps all)"),
    Setting("HIKESHI_WEBHOOK_TIMEOUT", seconds, "10", "webhook_timeout_seconds",
            "seconds per webhook attempt"),
    Setting("HIKESHI_WEBHOOK_MAX_ATTEMPTS", whole, "8", "webhook_max_attempts",
            "webhook attempts before giving up"),
    Setting("HIKESHI_SCHEDULER_LOCK_POLL", seconds, "15", "scheduler_lock_poll_seconds",
            "how often a waiting scheduler retries the lock"),
    Setting("HIKESHI_SCHEDULER_TICK_SECONDS", whole, "60", "scheduler_tick_seconds", "scheduler tick"),
    Setting("HIKESHI_PUSH_REPUSH_MINUTES", whole, "15", "push_repush_minutes",
            "first wait before a waiting command's device is woken again (doubling)"),
    Setting("HIKESHI_PUSH_REPUSH_MAX", whole, "6", "push_repush_max", "wake-ups again at most"),
    Setting("HIKESHI_APNS_OUTAGE_ALERT_MINUTES", whole, "10", "apns_outage_alert_minutes",
            "an APNs outage longer than this raises an alert"),
    Setting("HIKESHI_READYZ_MIN_FREE_MB", whole, "100", "readyz_min_free_mb",
            "free disk /readyz wants in the instance folder"),
    Setting("HIKESHI_SMTP_HOST", text, None, "smtp_host", "alert e-mail server (off while unset)"),
    Setting("HIKESHI_SMTP_PORT", whole, "587", "smtp_port", "alert e-mail server port"),
    Setting("HIKESHI_SMTP_STARTTLS", flag, "1", "smtp_starttls", "use STARTTLS"),
    Setting("HIKESHI_SMTP_USERNAME", text, None, "smtp_username", "SMTP user"),
    Setting("HIKESHI_SMTP_PASSWORD", text, None, "smtp_password", "SMTP password"),
    Setting("HIKESHI_SMTP_FROM", text, "hikeshi@localhost", "smtp_from", "alert e-mail sender"),
    Setting("HIKESHI_ALERT_EMAIL_TO", words, "", "alert_email_to", "comma-separated alert e-mail recipients"),
    Setting("HIKESHI_BACKUP_DIR", folder, None, "backup_directory",
            "scheduled encrypted backups go here (off while unset)"),
    Setting("HIKESHI_BACKUP_KEY_FILE", folder, None, "backup_key_file",
            "key file of scheduled backups (never beside them)"),
    Setting("HIKESHI_BACKUP_GENERATIONS", whole, "48", "backup_generations", "scheduled backups kept"),
    Setting("HIKESHI_BACKUP_INTERVAL_MINUTES", whole, "60", "backup_interval_minutes",
            "minutes between scheduled backups"),
    BACKUP_PASSPHRASE,
    Setting("HIKESHI_ANDROID_AGENT_PACKAGE", text, "jp.hikeshi.agent", "android_agent_package",
            "Android agent package in the provisioning QR"),
    Setting("HIKESHI_ANDROID_AGENT_COMPONENT", text, "jp.hikeshi.agent/.HikeshiAdminReceiver",
            "android_agent_component", "Android agent admin receiver"),
    Setting("HIKESHI_ANDROID_AGENT_URL", text, None, "android_agent_download_url", "agent APK download URL"),
    Setting("HIKESHI_ANDROID_AGENT_CHECKSUM", text, None, "android_agent_signature_checksum",
            "agent signing-certificate checksum"),
    Setting("HIKESHI_ANDROID_AGENT_SIGNING_CERT", text, None, "android_agent_signing_cert_file",
            "agent signing certificate, when the checksum is not given"),
    Setting("HIKESHI_ANDROID_WIFI_SSID", text, None, "android_provisioning_wifi_ssid",
            "Wi-Fi joined during Android provisioning"),
    Setting("HIKESHI_ANDROID_WIFI_SECURITY", text, None, "android_provisioning_wifi_security",
            "its security type"),
    Setting("HIKESHI_ANDROID_WIFI_PASSWORD", text, None, "android_provisioning_wifi_password",
            "its password"),
    Setting("HIKESHI_ANDROID_LOCALE", text, "ja_JP", "android_provisioning_locale",
            "locale set during provisioning"),
    Setting("HIKESHI_ANDROID_TIME_ZONE", text, "Asia/Tokyo", "android_provisioning_time_zone",
            "time zone set during provisioning"),
    Setting("HIKESHI_ANDROID_POLL_SECONDS", whole, "900", "android_poll_interval_seconds",
            "agent poll interval"),
    Setting("HIKESHI_ANDROID_LONG_POLL_SECONDS", whole, "55", "android_long_poll_seconds",
            "long-poll length"),
    Setting("HIKESHI_ANDROID_MAX_LONG_POLLS", whole, "8", "android_max_long_polls",
            "long polls held per process"),
    Setting("HIKESHI_ANDROID_SIGNATURE_SKEW_SECONDS", whole, "300", "android_signature_max_skew_seconds",
            "how old a signed agent request may be"),
    Setting("HIKESHI_ANDROID_SIGNATURE_FUTURE_SKEW_SECONDS", whole, "30",
            "android_signature_future_skew_seconds", "how far in the future a signed agent request may be"),
    Setting("HIKESHI_AMAPI_URL", url, "https://androidmanagement.googleapis.com/v1", "amapi_url",
            "Google's Android Management API"),
    Setting("HIKESHI_PUBSUB_URL", url, "https://pubsub.googleapis.com/v1", "pubsub_url",
            "Google Cloud Pub/Sub, where Android Management API notifications are pulled"),
    Setting("HIKESHI_AMAPI_PULL_SECONDS", positive, "60", "amapi_pull_seconds",
            "seconds between pulls of Android Management API notifications"),
    Setting("HIKESHI_MQTT_URL", text, None, "mqtt_url", "MQTT broker for Android wake-ups (off while unset)"),
    Setting("HIKESHI_MQTT_USERNAME", text, None, "mqtt_username", "MQTT user"),
    Setting("HIKESHI_MQTT_PASSWORD", text, None, "mqtt_password", "MQTT password"),
    Setting("HIKESHI_MQTT_CA_FILE", text, None, "mqtt_ca_file", "CA bundle for mqtts://"),
    Setting("HIKESHI_MQTT_TOPIC_PREFIX", topic, "hikeshi/devices", "mqtt_topic_prefix",
            "wake-up topic prefix"),
    Setting("HIKESHI_MQTT_DEVICE_URL", text, None, "mqtt_device_url", "the broker as agents reach it"),
    LOG_FORMAT,
    LOG_LEVEL,
    SCHEDULER_IN_SERVE,
)
# fmt: on


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
    # A second connection opens only when every open one carries as many streams as APNs allows.
    apns_connections: int = 4
    apns_streams_per_connection: int = 500
    apns_expiration_seconds: int = 7 * 24 * 3600
    device_ca_file: str | None = None
    # Automated Device Enrollment (issue 20): the device assignment service, how often it is
    # synced, and the CA that must have signed a device's machine info (Apple's when unset).
    ade_url: str = "https://mdmenrollment.apple.com"
    ade_sync_minutes: int = 30
    ade_device_ca_file: str | None = None
    # Apps and Books (issue 21): the service, and how often the assets are synced (events are
    # polled at every scheduler run while any is pending).
    vpp_url: str = "https://vpp.itunes.apple.com/mdm/v2"
    vpp_sync_minutes: int = 60
    client_cert_header: str | None = None
    # The private CA that issued the server's TLS certificate: enrollment profiles install it and
    # pin the MDM URLs to it (enrollment/profile.py); `hikeshi doctor` trusts it for its HTTPS check.
    server_anchor_file: str | None = None
    # The MDM vendor certificate and key the console's push-certificate page signs requests with;
    # unset: the page prepares a request for a community signing service instead.
    push_vendor_cert_file: str | None = None
    push_vendor_key_file: str | None = None
    max_device_body_bytes: int = 1024 * 1024
    # /mdm/connect: answers up to the first limit are verified, parsed and stored; larger ones up
    # to the second are only streamed through the signature check, so that a verified device's
    # command can be failed instead of being offered again forever (see mdm/doors/apple/answers.py).
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
    # Android Management API (issue 22): Google's API for tablets with Google Mobile Services, the
    # Pub/Sub service its notifications are pulled from, and how often they are pulled.
    amapi_url: str = "https://androidmanagement.googleapis.com/v1"
    pubsub_url: str = "https://pubsub.googleapis.com/v1"
    amapi_pull_seconds: int = 60
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
    # Android wake-up over MQTT (mdm/ground/push/mqtt.py, docs/mqtt-wakeup.md); off while mqtt_url is unset.
    mqtt_url: str | None = None  # mqtt://host[:1883] or mqtts://host[:8883]
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_ca_file: str | None = None  # CA bundle for mqtts://; system trust when unset
    mqtt_topic_prefix: str = "hikeshi/devices"  # wake-ups go to <prefix>/<device id>/wake
    mqtt_device_url: str | None = None  # the broker as agents reach it, when not as the server does
    # http:// public URLs other than loopback are refused unless this is set (mdm/ground/transport.py).
    dev_insecure_http: bool = False
    # gunicorn's request-line limit: SCEP GET PKIOperation of a 4096-bit request is about 5.6 KB.
    max_request_line: int = 8190
    # Networks webhooks may reach although they are loopback, private, link-local... (CIDR list).
    webhook_allow_networks: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(
        cls, *, generate_secret: bool = True, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """Settings from the environment, through TABLE. `generate_secret=False` never writes a
        secret_key (a restore brings its own: a refused one must leave the target folder as it was)."""
        values = {s.attribute: s.read(environ) for s in TABLE if s.attribute is not None}
        instance: Path = values["instance_path"]
        instance.mkdir(parents=True, exist_ok=True)
        keep_private(instance)
        if not values["secret_key"]:
            if generate_secret or (instance / "secret_key").exists():
                values["secret_key"] = read_or_create_secret(instance / "secret_key")
            else:
                values["secret_key"] = ""
        values["database_url"] = values["database_url"] or f"sqlite:///{instance / 'hikeshi.db'}"
        settings = cls(**values)
        return replace(settings, **overrides) if overrides else settings
