"""Command results shaped by Apple's schema (mdm/commands/*.yaml): every response key the schema
lists, filled by its type, or only the required ones; plus keys Apple has not defined (yet)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from tests.support.apple_schema import schema_missing

COMMANDS_DIR = Path(__file__).resolve().parents[3] / "shared" / "apple-device-management" / "mdm" / "commands"


@lru_cache
def response_keys(name: str) -> list[dict[str, Any]]:
    path = COMMANDS_DIR / f"{name}.yaml"
    if not path.is_file():
        # A checkout without ../shared (a user's machine): skip, as the hotline catalog test does.
        schema_missing(f"Apple schema folder missing: {COMMANDS_DIR}")
    data = yaml.safe_load(path.read_text())
    return data.get("responsekeys") or []


def _value(spec: dict[str, Any], overrides: dict[str, Any], required_only: bool) -> Any:
    key = spec.get("key", "")
    if key in overrides:
        return overrides[key]
    kind = spec.get("type")
    if kind == "<dictionary>":
        return _dictionary(spec.get("subkeys") or [], overrides, required_only)
    if kind == "<array>":
        items = spec.get("subkeys") or []
        return [_value(items[0], overrides, required_only)] if items else []
    return {
        "<string>": f"sample-{key}",
        "<integer>": 1,
        "<real>": 0.5,
        "<boolean>": True,
        "<data>": b"\x30\x03\x02\x01\x01",
        "<date>": datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None),
    }.get(kind, f"sample-{key}")


def _dictionary(keys: list[dict[str, Any]], overrides: dict[str, Any], required_only: bool) -> dict[str, Any]:
    out = {}
    for spec in keys:
        if required_only and spec.get("presence") != "required":
            continue
        out[spec["key"]] = _value(spec, overrides, required_only)
    # Apple adds keys every year: every dictionary carries one Hikeshi has never heard of.
    out["SomeKeyAppleAddsNextYear"] = {"Nested": [1, 2, 3]}
    return out


def schema_response(name: str, *, required_only: bool = False, **overrides: Any) -> dict[str, Any]:
    """The response keys of command `name` (e.g. "certificate.list"), with unknown extras added."""
    return _dictionary(response_keys(name), overrides, required_only)
