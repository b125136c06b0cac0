"""Check JSON against the Android Management API and Pub/Sub discovery documents.

The documents are the ones google-api-python-client ships (discovery_cache/documents/
androidmanagement.v1.json and pubsub.v1.json, a test dependency), read at test time and never
copied into the project.

- `policy_problems(policy)` walks a policy against the `Policy` schema: unknown fields, wrong JSON
  types, enum values outside the list, recursing through `$ref`, arrays and objects. An empty list
  means the policy conforms.
- `schema_problems(value, schema, document=..., strict=...)` does the same for any schema of either
  document, and also checks the string formats the documents name (google-datetime,
  google-duration, int64, int32 range, byte). With `strict=True` (what a Google server sends),
  int64 values must be JSON strings, as Google's JSON mapping writes them; a client may send
  either.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

AMAPI = "androidmanagement.v1.json"
PUBSUB = "pubsub.v1.json"


@cache
def discovery_document(name: str) -> dict[str, Any]:
    # Found without importing the client (only its data file is read).
    spec = importlib.util.find_spec("googleapiclient")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("google-api-python-client (a test dependency) is not installed")
    path = Path(spec.submodule_search_locations[0]) / "discovery_cache" / "documents" / name
    return json.loads(path.read_text(encoding="utf-8"))


def discovery() -> dict[str, Any]:
    return discovery_document(AMAPI)


def pubsub_discovery() -> dict[str, Any]:
    return discovery_document(PUBSUB)


_TYPES = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "any": lambda v: True,
}

# RFC 3339 as Google's JSON mapping writes Timestamps: always UTC "Z" (or an offset on input).
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
_DURATION = re.compile(r"^-?\d+(\.\d{1,9})?s$")
_INT64 = re.compile(r"^-?\d{1,19}$")


def policy_problems(policy: dict[str, Any], schema: str = "Policy") -> list[str]:
    problems: list[str] = []
    _check(policy, {"$ref": schema}, schema, problems, discovery(), strict=False, formats=False)
    return problems


def schema_problems(
    value: Any, schema: str, *, document: str = AMAPI, strict: bool = False, where: str = ""
) -> list[str]:
    problems: list[str] = []
    _check(
        value,
        {"$ref": schema},
        where or schema,
        problems,
        discovery_document(document),
        strict=strict,
        formats=True,
    )
    return problems


def format_problem(value: Any, spec: dict[str, Any], *, strict: bool) -> str | None:
    """What is wrong with a scalar against the document's `format` (None when nothing is)."""
    fmt = spec.get("format")
    if fmt == "int64" or fmt == "uint64":
        if isinstance(value, int) and not isinstance(value, bool):
            return "int64 written as a JSON number (Google writes it as a string)" if strict else None
        if isinstance(value, str) and not _INT64.match(value):
            return f"{value!r} is not an int64"
    elif fmt in ("int32", "uint32") and isinstance(value, int) and not -(2**31) <= value < 2**32:
        return f"{value} is outside {fmt}"
    elif fmt == "google-datetime" and isinstance(value, str) and not _DATETIME.match(value):
        return f"{value!r} is not an RFC 3339 timestamp"
    elif fmt == "google-duration" and isinstance(value, str) and not _DURATION.match(value):
        return f"{value!r} is not a duration like '600s'"
    elif fmt == "byte" and isinstance(value, str):
        try:
            base64.b64decode(value.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            return f"{value[:20]!r}… is not base64"
    return None


def _check(
    value: Any,
    spec: dict[str, Any],
    path: str,
    problems: list[str],
    document: dict[str, Any],
    *,
    strict: bool,
    formats: bool,
) -> None:
    if "$ref" in spec:
        spec = document["schemas"][spec["$ref"]]
    kind = spec.get("type", "any")
    if not _TYPES.get(kind, _TYPES["any"])(value):
        # Discovery writes int64 as strings (format int64); the policy may send either.
        int64 = (
            kind == "string"
            and spec.get("format") in ("int64", "uint64")
            and isinstance(value, int)
            and not isinstance(value, bool)
            and not strict
        )
        if not int64:
            problems.append(f"{path}: expected {kind}, got {type(value).__name__}")
        return
    if "enum" in spec and value not in spec["enum"]:
        problems.append(f"{path}: {value!r} is not one of {spec['enum']}")
    if formats:
        problem = format_problem(value, spec, strict=strict)
        if problem:
            problems.append(f"{path}: {problem}")
    if kind == "array":
        for index, item in enumerate(value):
            _check(
                item,
                spec.get("items", {}),
                f"{path}[{index}]",
                problems,
                document,
                strict=strict,
                formats=formats,
            )
    elif kind == "object":
        properties = spec.get("properties")
        extra = spec.get("additionalProperties")
        for name, item in value.items():
            if properties and name in properties:
                _check(
                    item,
                    properties[name],
                    f"{path}.{name}",
                    problems,
                    document,
                    strict=strict,
                    formats=formats,
                )
            elif extra is not None:
                _check(item, extra, f"{path}.{name}", problems, document, strict=strict, formats=formats)
            elif properties is not None:
                problems.append(f"{path}: unknown field {name!r}")


def deprecated_uses(value: Any, schema: str, *, document: str = AMAPI) -> list[str]:
    """Fields and enum values of `value` the document marks deprecated (still valid, but Google
    says to move off them: e.g. Policy.passwordRequirements → passwordPolicies)."""
    found: list[str] = []
    _deprecated(value, {"$ref": schema}, schema, found, discovery_document(document))
    return found


def _deprecated(
    value: Any, spec: dict[str, Any], path: str, found: list[str], document: dict[str, Any]
) -> None:
    if "$ref" in spec:
        spec = document["schemas"][spec["$ref"]]
    enum, flags = spec.get("enum"), spec.get("enumDeprecated")
    if enum and flags and value in enum and flags[enum.index(value)]:
        found.append(f"{path}: {value!r} is deprecated")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _deprecated(item, spec.get("items", {}), f"{path}[{index}]", found, document)
    elif isinstance(value, dict):
        properties = spec.get("properties") or {}
        for name, item in value.items():
            sub = properties.get(name) or spec.get("additionalProperties")
            if sub is None:
                continue
            if sub.get("deprecated"):
                found.append(f"{path}.{name} is deprecated")
            _deprecated(item, sub, f"{path}.{name}", found, document)
