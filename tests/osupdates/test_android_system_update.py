"""Android system updates from the unit's update policy (issue #21 item 5): the agent's policy
carries `systemUpdate` (AUTOMATIC, WINDOWED outside the unit's blocked windows, POSTPONE),
inherited down the org tree, valid against the Android Management API's own discovery document
(the copy google-api-python-client ships), and a changed policy changes the policy version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mdm.ground.audit import Actor
from mdm.ground.ca import ensure_ca
from mdm.services.android_channel.policy import current_policy
from mdm.services.osupdates.policy import set_update_policy
from tests.profiles.test_android_policy import _android, units  # noqa: F401  (fixture)

ADMIN = Actor("admin@hq", "admin", "192.0.2.1")


def _discovery() -> dict[str, Any]:
    googleapiclient = pytest.importorskip("googleapiclient")
    path = (
        Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "androidmanagement.v1.json"
    )
    return json.loads(path.read_text(encoding="utf-8"))


def _problems(value: Any, schema: dict[str, Any], schemas: dict[str, Any], path: str) -> list[str]:
    """Check `value` against a discovery-document schema: types, enums, known properties."""
    if "$ref" in schema:
        return _problems(value, schemas[schema["$ref"]], schemas, path)
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        found = []
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key not in properties:
                found.append(f"{path}.{key}: not a property of the API")
            else:
                found += _problems(item, properties[key], schemas, f"{path}.{key}")
        return found
    if kind == "array":
        if not isinstance(value, list):
            return [f"{path}: expected an array"]
        return [
            p for i, v in enumerate(value) for p in _problems(v, schema["items"], schemas, f"{path}[{i}]")
        ]
    if kind == "integer":
        return (
            [] if isinstance(value, int) and not isinstance(value, bool) else [f"{path}: expected an integer"]
        )
    if kind == "string":
        if not isinstance(value, str):
            return [f"{path}: expected a string"]
        if "enum" in schema and value not in schema["enum"]:
            return [f"{path}: {value!r} not in {schema['enum']}"]
        return []
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{path}: expected a boolean"]
    return []


def _check_system_update(policy: dict[str, Any]) -> dict[str, Any]:
    document = _discovery()
    schemas = document["schemas"]
    system_update = policy["systemUpdate"]
    assert (
        _problems(system_update, schemas["Policy"]["properties"]["systemUpdate"], schemas, "systemUpdate")
        == []
    )
    if system_update["type"] == "WINDOWED":
        assert 0 <= system_update["startMinutes"] <= 1439 and 0 <= system_update["endMinutes"] <= 1439
    return system_update


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"android_mode": "automatic"}, {"type": "AUTOMATIC"}),
        ({"android_mode": "postpone"}, {"type": "POSTPONE"}),
        # No window blocked: four hours from the install time.
        (
            {"android_mode": "windowed", "install_time": "01:30"},
            {"type": "WINDOWED", "startMinutes": 90, "endMinutes": 330},
        ),
        # Two shift changes: the longest free stretch, 19:00 → 07:30 across midnight.
        (
            {
                "android_mode": "windowed",
                "blocked_windows": [{"start": "07:30", "end": "09:30"}, {"start": "17:00", "end": "19:00"}],
            },
            {"type": "WINDOWED", "startMinutes": 1140, "endMinutes": 450},
        ),
    ],
)
def test_system_update_follows_the_unit_policy(session, settings, units, values, expected):  # noqa: F811
    ensure_ca(session, settings)
    device = _android(session, units["unit"])
    before = current_policy(session, device)
    assert "systemUpdate" not in before.policy
    # Set on the HQ, inherited by the unit the tablet is in.
    set_update_policy(session, ADMIN, units["hq"].id, **values)
    after = current_policy(session, device)
    assert _check_system_update(after.policy) == expected
    assert after.version != before.version


def test_a_unit_overrides_what_it_inherits(session, settings, units):  # noqa: F811
    ensure_ca(session, settings)
    device = _android(session, units["unit"])
    set_update_policy(session, ADMIN, units["hq"].id, android_mode="automatic")
    set_update_policy(session, ADMIN, units["unit"].id, android_mode="postpone")
    assert _check_system_update(current_policy(session, device).policy) == {"type": "POSTPONE"}
    set_update_policy(session, ADMIN, units["unit"].id, android_mode=None)  # inherit again
    assert _check_system_update(current_policy(session, device).policy) == {"type": "AUTOMATIC"}
