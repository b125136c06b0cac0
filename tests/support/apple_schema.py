"""Check configuration-profile payloads against Apple's device-management schema (YAML).

Apple publishes one YAML file per payload type (apple/device-management, mdm/profiles). This walks
a payload dict (as plistlib loads it) against its file and lists every problem:

- unknown keys (in neither the payload's keys nor CommonPayloadKeys),
- wrong types (<string>, <integer>, <boolean>, <real>, <date>, <data>, <array>, <dictionary>),
- missing required keys (presence: required),
- values outside `rangelist` / `range`, strings not matching `format`, arrays outside `repetition`,
- with `platform="iOS"`: payloads and keys the schema marks as not available on that platform,

recursing into dictionaries and arrays as the YAML's nested `subkeys` describe. An empty list
means the payload conforms. Usable for any payload: rendered profiles, the enrollment profile
(com.apple.mdm, com.apple.security.scep) ...

    from tests.support.apple_schema import check_payload, check_profile
    assert check_profile(plistlib.loads(mobileconfig_bytes), platform="iOS") == []

The schema folder is ../shared/apple-device-management/mdm/profiles next to the repository, or
the folder named by HIKESHI_APPLE_SCHEMA_DIR (the profiles folder itself, or a folder holding
mdm/profiles or apple-device-management/mdm/profiles).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import yaml

SCHEMA_ENV = "HIKESHI_APPLE_SCHEMA_DIR"

_TYPE_CHECKS = {
    "<string>": lambda v: isinstance(v, str),
    "<integer>": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "<boolean>": lambda v: isinstance(v, bool),
    "<real>": lambda v: isinstance(v, float),
    "<date>": lambda v: isinstance(v, datetime),
    "<data>": lambda v: isinstance(v, bytes | bytearray),
    "<array>": lambda v: isinstance(v, list | tuple),
    "<dictionary>": lambda v: isinstance(v, Mapping),
    "<any>": lambda v: True,
}


def schema_dir() -> Path:
    """The folder with TopLevel.yaml and one YAML per payload type; FileNotFoundError if none."""
    env = os.environ.get(SCHEMA_ENV)
    if env:
        base = Path(env)
        candidates = [base, base / "mdm" / "profiles", base / "apple-device-management" / "mdm" / "profiles"]
    else:
        # tests/support/apple_schema.py → parents[2] is the repository, parents[3] holds shared/.
        shared = Path(__file__).resolve().parents[3] / "shared"
        candidates = [shared / "apple-device-management" / "mdm" / "profiles"]
    for candidate in candidates:
        if (candidate / "TopLevel.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        "Apple profile schemas not found in " + ", ".join(str(c) for c in candidates) + f" (set {SCHEMA_ENV})"
    )


@dataclass(frozen=True)
class PayloadSchema:
    payload_type: str
    title: str
    source: str
    supported_os: Mapping[str, Any]
    keys: tuple[Mapping[str, Any], ...]


class AppleSchemas:
    """Every payload schema in a folder, indexed by payload type."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.by_type: dict[str, list[PayloadSchema]] = {}
        for path in sorted(directory.glob("*.yaml")):
            with path.open(encoding="utf-8") as fh:
                document = yaml.safe_load(fh)
            payload = document.get("payload") or {}
            payload_type = payload.get("payloadtype")
            if not payload_type:
                continue
            schema = PayloadSchema(
                payload_type=payload_type,
                title=document.get("title", ""),
                source=path.name,
                supported_os=payload.get("supportedOS") or {},
                keys=tuple(document.get("payloadkeys") or ()),
            )
            self.by_type.setdefault(payload_type, []).append(schema)
        self.common = self._single("CommonPayloadKeys")
        self.top_level = self._single("TopLevel")

    def _single(self, payload_type: str) -> PayloadSchema:
        schemas = self.by_type.get(payload_type)
        if not schemas:
            raise FileNotFoundError(f"{payload_type}.yaml is missing from {self.directory}")
        return schemas[0]

    @property
    def payload_types(self) -> list[str]:
        return sorted(self.by_type)

    def check_payload(self, payload: Mapping[str, Any], *, platform: str | None = None) -> list[str]:
        """Problems of one payload dictionary (an item of PayloadContent); [] when it conforms."""
        if not isinstance(payload, Mapping):
            return [f"payload: expected <dictionary>, got {type(payload).__name__}"]
        payload_type = payload.get("PayloadType")
        if not isinstance(payload_type, str):
            return ["payload: PayloadType is missing or not a string"]
        variants = self.by_type.get(payload_type)
        if not variants or payload_type in ("TopLevel", "CommonPayloadKeys"):
            return [f"{payload_type}: unknown payload type"]
        # A few payload types are described by more than one file: the closest one counts.
        results = [self._check_with(schema, payload, platform) for schema in variants]
        return min(results, key=len)

    def _check_with(
        self, schema: PayloadSchema, payload: Mapping[str, Any], platform: str | None
    ) -> list[str]:
        walker = _Walker(platform)
        if platform is not None:
            supported = schema.supported_os.get(platform)
            if supported is None or supported.get("introduced") == "n/a":
                walker.problems.append(f"{schema.payload_type}: payload type not available on {platform}")
        keys = {spec["key"]: spec for spec in self.common.keys}
        keys.update({spec["key"]: spec for spec in schema.keys})
        walker.check_dict(payload, list(keys.values()), schema.payload_type)
        return walker.problems

    def check_profile(self, profile: Mapping[str, Any], *, platform: str | None = None) -> list[str]:
        """Problems of a whole profile: its TopLevel keys, then every PayloadContent item."""
        if not isinstance(profile, Mapping):
            return [f"profile: expected <dictionary>, got {type(profile).__name__}"]
        walker = _Walker(platform)
        walker.check_dict(profile, list(self.top_level.keys), "TopLevel")
        problems = walker.problems
        content = profile.get("PayloadContent")
        if isinstance(content, list | tuple):
            for index, item in enumerate(content):
                problems += [
                    f"PayloadContent[{index}] {p}" for p in self.check_payload(item, platform=platform)
                ]
        return problems


class _Walker:
    def __init__(self, platform: str | None) -> None:
        self.platform = platform
        self.problems: list[str] = []

    def check_dict(self, value: Mapping[str, Any], keys: Sequence[Mapping[str, Any]], path: str) -> None:
        specs = {spec["key"]: spec for spec in keys}
        wildcard = specs.get("ANY")
        for name, item in value.items():
            spec = specs.get(name)
            if spec is None and wildcard is not None:
                spec = wildcard
            if spec is None:
                self.problems.append(f"{path}: unknown key {name!r}")
                continue
            self.check_value(item, spec, f"{path}.{name}")
        for spec in keys:
            if spec.get("presence") == "required" and spec["key"] != "ANY" and spec["key"] not in value:
                self.problems.append(f"{path}: missing required key {spec['key']!r}")

    def check_value(self, value: Any, spec: Mapping[str, Any], path: str) -> None:
        expected = spec.get("type")
        check = _TYPE_CHECKS.get(expected or "<any>")
        if check is None:
            self.problems.append(f"{path}: schema type {expected!r} is unknown to this checker")
            return
        if not check(value):
            self.problems.append(f"{path}: expected {expected}, got {type(value).__name__}")
            return
        self._check_platform(spec, path)
        if "rangelist" in spec and not _in_rangelist(value, spec["rangelist"]):
            self.problems.append(f"{path}: {value!r} is not one of {spec['rangelist']!r}")
        bounds = spec.get("range")
        if isinstance(bounds, Mapping) and isinstance(value, int | float) and not isinstance(value, bool):
            low, high = bounds.get("min"), bounds.get("max")
            if (low is not None and value < low) or (high is not None and value > high):
                self.problems.append(f"{path}: {value!r} is outside {low}..{high}")
        pattern = spec.get("format")
        if isinstance(pattern, str) and isinstance(value, str) and not _matches(pattern, value):
            self.problems.append(f"{path}: {value!r} does not match {pattern}")
        subkeys = spec.get("subkeys")
        if not subkeys:
            return
        if expected == "<dictionary>":
            self.check_dict(value, subkeys, path)
        elif expected == "<array>":
            self._check_array(value, subkeys, path)

    def _check_array(self, value: Sequence[Any], subkeys: Sequence[Mapping[str, Any]], path: str) -> None:
        for index, item in enumerate(value):
            item_path = f"{path}[{index}]"
            if len(subkeys) == 1:
                self.check_value(item, subkeys[0], item_path)
                continue
            # Several item shapes: the item must fit one of them.
            attempts = []
            for item_spec in subkeys:
                probe = _Walker(self.platform)
                probe.check_value(item, item_spec, item_path)
                attempts.append(probe.problems)
            best = min(attempts, key=len)
            self.problems.extend(best)
        repetition = subkeys[0].get("repetition") if len(subkeys) == 1 else None
        if isinstance(repetition, Mapping):
            low, high = repetition.get("min"), repetition.get("max")
            if (low is not None and len(value) < low) or (high is not None and len(value) > high):
                self.problems.append(f"{path}: has {len(value)} items, expected {low}..{high}")

    def _check_platform(self, spec: Mapping[str, Any], path: str) -> None:
        if self.platform is None:
            return
        supported = (spec.get("supportedOS") or {}).get(self.platform) or {}
        if supported.get("introduced") == "n/a":
            self.problems.append(f"{path}: not available on {self.platform}")
        elif "removed" in supported:
            self.problems.append(f"{path}: removed in {self.platform} {supported['removed']}")


def _in_rangelist(value: Any, allowed: Sequence[Any]) -> bool:
    for candidate in allowed:
        # True == 1 in Python; a boolean only matches a boolean.
        if isinstance(value, bool) or isinstance(candidate, bool):
            if isinstance(value, bool) and isinstance(candidate, bool) and value == candidate:
                return True
            continue
        if value == candidate:
            return True
    return False


def _matches(pattern: str, value: str) -> bool:
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return True  # a pattern Python cannot read is no evidence against the value


REQUIRE_ENV = "HIKESHI_REQUIRE_APPLE_SCHEMA"


def schema_required() -> bool:
    """In CI (CI=true, as CI services set it) or with HIKESHI_REQUIRE_APPLE_SCHEMA=1 a missing
    schema folder fails the tests that need it instead of skipping them silently."""
    flag = os.environ.get(REQUIRE_ENV, "").lower()
    if flag in ("0", "false", "no"):
        return False
    return flag in ("1", "true", "yes") or os.environ.get("CI", "").lower() in ("1", "true", "yes")


def schema_missing(reason: str) -> None:
    """Skip the calling test for a missing schema folder, or fail it where the folder is required."""
    if schema_required():
        pytest.fail(f"{reason}; required here ({REQUIRE_ENV}=1 or CI=true)", pytrace=False)
    pytest.skip(reason)


def schema_dir_or_skip() -> Path:
    """schema_dir(), or skip the calling test with the reason: a checkout without ../shared (a
    user's machine) runs everything else. Where the folder is required (CI) it fails instead."""
    try:
        return schema_dir()
    except FileNotFoundError as exc:
        schema_missing(str(exc))
        raise


@lru_cache(maxsize=4)
def _load(directory: Path) -> AppleSchemas:
    return AppleSchemas(directory)


def load_schemas(directory: Path | None = None) -> AppleSchemas:
    """The schemas in `directory` (default: schema_dir(), else the test is skipped), loaded once."""
    return _load(directory or schema_dir_or_skip())


def check_payload(
    payload: Mapping[str, Any], *, platform: str | None = None, schemas: AppleSchemas | None = None
) -> list[str]:
    """Problems of one payload dictionary against its payload type's schema; [] when it conforms."""
    return (schemas or load_schemas()).check_payload(payload, platform=platform)


def check_profile(
    profile: Mapping[str, Any], *, platform: str | None = None, schemas: AppleSchemas | None = None
) -> list[str]:
    """Problems of a whole profile dictionary (TopLevel keys and each PayloadContent item)."""
    return (schemas or load_schemas()).check_profile(profile, platform=platform)
