"""OS version strings compared as numbers ("17.5" is "17.5.0", older than "17.10")."""

from __future__ import annotations

import re


def version_tuple(version: str | None) -> tuple[int, int, int] | None:
    """ "17.5.1" → (17, 5, 1), "17.5" → (17, 5, 0); None when no leading number is there."""
    if not version:
        return None
    parts = [int(p) for p in re.findall(r"\d+", version.split(" ")[0])[:3]]
    if not parts:
        return None
    while len(parts) < 3:
        parts.append(0)
    return (parts[0], parts[1], parts[2])


def is_older(version: str | None, than: str | None) -> bool | None:
    """True/False, or None when either is unknown (unknown is never "up to date")."""
    mine, other = version_tuple(version), version_tuple(than)
    if mine is None or other is None:
        return None
    return mine < other


def newest(versions: list[str]) -> str | None:
    known = [v for v in versions if version_tuple(v) is not None]
    return max(known, key=lambda v: version_tuple(v) or (0, 0, 0)) if known else None
