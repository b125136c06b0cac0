"""Settings from environment variables, with an instance folder holding generated secrets.

Every variable is documented in README.md ("Configuration"). Secrets generated on first run are
written to the instance folder with mode 0600 and reused afterwards.
"""

from __future__ import annotations

import os
import secrets
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
    command_expiry_days: int = 7
    push_enabled: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        instance = Path(_env("HIKESHI_INSTANCE_PATH", "instance") or "instance").resolve()
        instance.mkdir(parents=True, exist_ok=True)
        os.chmod(instance, 0o700)
        secret = _env("HIKESHI_SECRET_KEY") or read_or_create_secret(instance / "secret_key")
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
            command_expiry_days=_env_int("HIKESHI_COMMAND_EXPIRY_DAYS", 7),
            push_enabled=(_env("HIKESHI_PUSH_ENABLED", "1") or "1") not in ("0", "false", "no"),
        )
        return replace(settings, **overrides) if overrides else settings
