"""Google's timestamps (RFC 3339, "2026-01-02T03:04:05.678Z") as Hikeshi's aware datetimes: the
one reading every AMAPI answer and notification shares."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def google_time(value: Any) -> datetime | None:
    """The instant Google wrote, or None where the field is missing or not a timestamp."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
