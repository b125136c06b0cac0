"""Coercing values a device reported: a wrong type or a missing key yields None, never an error."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any


def text(value: Any, limit: int = 255) -> str | None:
    if isinstance(value, str) and value:
        return value[:limit]
    return None


def boolean(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def integer(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def version_key(version: str | None) -> tuple[int, ...] | None:
    """ "17.5.1" → (17, 5, 1); None when the string holds no leading number."""
    if not version:
        return None
    parts = re.findall(r"\d+", version.split(" ")[0])
    return tuple(int(p) for p in parts) if parts else None


def json_safe(value: Any) -> Any:
    """A plist value made storable as JSON (data as hex, dates as ISO 8601)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
