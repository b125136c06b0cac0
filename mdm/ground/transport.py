"""What the server is reached over: https for devices, http only on loopback or in development.

Apple's MDM payload requires an https:// ServerURL and CheckInURL, and the enrollment token in a
QR code is a live credential: a public URL over plain http would put both on the wire in clear.
So an http:// HIKESHI_PUBLIC_URL is refused, with two exceptions: a loopback host (the README's
first start, http://127.0.0.1:8000, must work out of the box; nothing leaves the machine) and an
explicit development mode (HIKESHI_DEV_INSECURE_HTTP=1, e.g. a lab behind a TLS-terminating
proxy). Both are allowed with a warning.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from mdm.ground.config import Settings

# gunicorn never reads a longer request line than this (its own hard limit).
GUNICORN_MAX_REQUEST_LINE = 8190


class TransportError(ValueError):
    """A setting that would make the server unsafe to reach; the message says what to do."""


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_public_url(settings: Settings) -> list[str]:
    """Raise TransportError for a public URL devices cannot use safely; return warnings."""
    url = settings.public_url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TransportError(
            f"HIKESHI_PUBLIC_URL must be an https:// URL such as https://mdm.example.jp, not {url!r}"
        )
    if parts.scheme == "https":
        return []
    if _is_loopback(parts.hostname):
        return [
            f"public URL {url} is plain http on loopback: fine for trying Hikeshi on this machine, "
            "but devices need an https:// HIKESHI_PUBLIC_URL (Apple requires https for the MDM "
            "ServerURL and CheckInURL)"
        ]
    if settings.dev_insecure_http:
        return [
            f"public URL {url} is plain http (HIKESHI_DEV_INSECURE_HTTP=1): enrollment tokens and "
            "device traffic travel unencrypted; never use this in production"
        ]
    raise TransportError(
        f"HIKESHI_PUBLIC_URL {url} is plain http: Apple requires https:// for the MDM ServerURL and "
        "CheckInURL, and enrollment tokens must not travel in clear. Use an https:// URL (TLS on "
        "a proxy in front of Hikeshi), or set HIKESHI_DEV_INSECURE_HTTP=1 for a development lab"
    )


def request_line_limit(settings: Settings) -> int:
    """gunicorn's limit_request_line from HIKESHI_MAX_REQUEST_LINE (0: gunicorn's 1 MiB guard)."""
    value = settings.max_request_line
    if value < 0 or value > GUNICORN_MAX_REQUEST_LINE:
        raise TransportError(
            f"HIKESHI_MAX_REQUEST_LINE must be between 0 and {GUNICORN_MAX_REQUEST_LINE}, not {value}"
        )
    return value
