"""Short, readable descriptions of a stored spec for lists and detail pages, and a copy of a spec
with its secrets hidden (Wi-Fi passphrases) for readers who may not change profiles."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from profiles.payloads import KINDS
from profiles.secret_settings import REDACTED, SECRET_SETTINGS, has_secrets, redacted_spec

__all__ = [
    "REDACTED",
    "SECRET_SETTINGS",
    "dotted_messages",
    "has_secrets",
    "payload_summaries",
    "payload_summary",
    "payload_title",
    "redacted_spec",
]


def payload_title(kind: str, *, japanese: bool = False) -> str:
    found = KINDS.get(kind)
    if found is None:
        return kind
    return found.title_ja if japanese else found.title_en


def payload_summary(payload: Mapping[str, Any]) -> str:
    """One line naming what the payload sets, e.g. "SSID STATION · wpa2_enterprise · EAP-TLS"."""
    kind = payload.get("kind")
    settings = payload.get("settings") or {}
    parts: list[str] = []
    if kind == "wifi":
        parts = [f"SSID {settings.get('ssid')}", str(settings.get("security"))]
        if settings.get("eap_type"):
            parts.append(f"{settings['eap_type']} ({settings.get('certificate_source')})")
    elif kind == "passcode":
        parts = [f"min_length {settings.get('min_length')}"]
        for name in ("auto_lock_minutes", "max_failed_attempts", "max_age_days", "history"):
            if name in settings:
                parts.append(f"{name} {settings[name]}")
    elif kind == "restrictions":
        denied = sorted(k for k, v in settings.items() if k.startswith("allow_") and v is False)
        allowed = sorted(k for k, v in settings.items() if k.startswith("allow_") and v is True)
        if denied:
            parts.append("off: " + ", ".join(k.removeprefix("allow_") for k in denied))
        if allowed:
            parts.append("on: " + ", ".join(k.removeprefix("allow_") for k in allowed))
        for name in ("app_allow_list", "app_block_list", "required_apps"):
            if name in settings:
                parts.append(f"{name} ({len(settings[name])})")
        if "usb_data_access" in settings:
            parts.append(f"usb {settings['usb_data_access']}")
    elif kind == "certificates":
        parts = [f"{len(settings.get('certificates', []))} certificates"]
    elif kind == "web_content_filter":
        parts = [f"{len(settings.get('allowed_urls', []))} allowed URLs"]
    return " · ".join(parts)


def payload_summaries(spec: Mapping[str, Any]) -> list[dict[str, str]]:
    return [
        {"kind": p["kind"], "key": p["key"], "summary": payload_summary(p)} for p in spec.get("payloads", [])
    ]


def dotted_messages(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages flattened, e.g. {"payloads.0.settings.ssid": ["..."]}."""
    if isinstance(messages, Mapping):
        flat: dict[str, list[str]] = {}
        for key, inner in messages.items():
            name = str(key) if key != "_schema" else ""
            path = ".".join(p for p in (prefix, name) if p)
            flat.update(dotted_messages(inner, path))
        return flat
    items = messages if isinstance(messages, list) else [messages]
    return {prefix or "_schema": [str(m) for m in items]}
