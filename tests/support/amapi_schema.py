"""Check an AMAPI-shaped policy against the Android Management API discovery document.

The document is the one google-api-python-client ships (discovery_cache/documents/
androidmanagement.v1.json, a test dependency). `policy_problems(policy)` walks the policy against
the `Policy` schema: unknown fields, wrong JSON types, enum values outside the list, recursing
through `$ref`, arrays and objects. An empty list means the policy conforms."""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest


@cache
def discovery() -> dict[str, Any]:
    # Found without importing the client (only its data file is read).
    spec = importlib.util.find_spec("googleapiclient")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("google-api-python-client (a test dependency) is not installed")
    path = (
        Path(spec.submodule_search_locations[0])
        / "discovery_cache"
        / "documents"
        / "androidmanagement.v1.json"
    )
    return json.loads(path.read_text(encoding="utf-8"))


_TYPES = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "any": lambda v: True,
}


def policy_problems(policy: dict[str, Any], schema: str = "Policy") -> list[str]:
    problems: list[str] = []
    _check(policy, {"$ref": schema}, schema, problems)
    return problems


def _check(value: Any, spec: dict[str, Any], path: str, problems: list[str]) -> None:
    if "$ref" in spec:
        spec = discovery()["schemas"][spec["$ref"]]
    kind = spec.get("type", "any")
    if not _TYPES.get(kind, _TYPES["any"])(value):
        # Discovery writes int64 as strings (format int64); the policy may send either.
        int64 = kind == "string" and spec.get("format") == "int64" and isinstance(value, int)
        if not int64:
            problems.append(f"{path}: expected {kind}, got {type(value).__name__}")
        return
    if "enum" in spec and value not in spec["enum"]:
        problems.append(f"{path}: {value!r} is not one of {spec['enum']}")
    if kind == "array":
        for index, item in enumerate(value):
            _check(item, spec.get("items", {}), f"{path}[{index}]", problems)
    elif kind == "object":
        properties = spec.get("properties")
        extra = spec.get("additionalProperties")
        for name, item in value.items():
            if properties and name in properties:
                _check(item, properties[name], f"{path}.{name}", problems)
            elif extra is not None:
                _check(item, extra, f"{path}.{name}", problems)
            elif properties is not None:
                problems.append(f"{path}: unknown field {name!r}")
