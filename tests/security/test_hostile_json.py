"""Hostile input that used to be a 500: deep JSON, over-long numbers, ids beyond the database's
range. Each attack goes over HTTP through the real app; each must be a 4xx naming the problem."""

# ruff: noqa: F811  (the `tree` fixture is imported from tests/web and used as a parameter)
from __future__ import annotations

import json
from typing import Any

import pytest

from tests.web.conftest import tree  # noqa: F401  (fixture)
from tests.web.helpers import bearer, login, make_token, make_user, post_form
from web.hostile_input import MAX_DEPTH, MAX_ID

DEEP = 100_000  # far beyond Python's recursion limit


@pytest.fixture
def admin_token(session_factory: Any, tree: Any) -> str:
    with session_factory() as session:
        return make_token(session, "admin")


def _post_raw(client: Any, path: str, text: str, token: str) -> Any:
    return client.post(path, data=text, headers={**bearer(token), "Content-Type": "application/json"})


def _assert_refused(response: Any, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.data[:300]
    body = response.get_json()
    assert body["error"]["code"] == {400: "invalid_input", 404: "not_found"}[status]
    return body


def test_deeply_nested_array_to_incidents_is_400(client: Any, admin_token: str) -> None:
    body = _assert_refused(_post_raw(client, "/api/v1/incidents", "[" * DEEP + "]" * DEEP, admin_token))
    assert "nested deeper" in body["error"]["message"]
    assert "_body" in body["error"]["fields"]


def test_deeply_nested_object_to_profile_validate_is_400(client: Any, admin_token: str) -> None:
    text = '{"a":' * DEEP + "1" + "}" * DEEP
    body = _assert_refused(_post_raw(client, "/api/v1/profiles/validate", text, admin_token))
    assert "nested deeper" in body["error"]["message"]


def test_nesting_just_within_the_bound_is_parsed_normally(client: Any, admin_token: str) -> None:
    # Depth MAX_DEPTH passes the bound and reaches the schema, which names the field it dislikes.
    inner = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    response = _post_raw(client, "/api/v1/incidents", '{"device_id": ' + inner + "}", admin_token)
    body = _assert_refused(response)
    assert "device_id" in body["error"]["fields"]


def test_brackets_inside_strings_do_not_count_as_nesting(client: Any, admin_token: str, tree: Any) -> None:
    payload = {"device_id": tree.device_a.id, "caller_name": "[" * 40 + "{" * 40 + '\\"'}
    response = _post_raw(client, "/api/v1/incidents", json.dumps(payload), admin_token)
    assert response.status_code == 201, response.data[:300]


def test_five_thousand_digit_device_id_is_400(client: Any, admin_token: str) -> None:
    text = '{"device_id": ' + "5" * 5000 + ', "caller_name": "x"}'
    body = _assert_refused(_post_raw(client, "/api/v1/incidents", text, admin_token))
    assert "digits" in body["error"]["message"]


def test_device_id_beyond_the_id_range_names_the_field(client: Any, admin_token: str) -> None:
    response = client.post(
        "/api/v1/incidents", json={"device_id": MAX_ID + 1, "caller_name": "x"}, headers=bearer(admin_token)
    )
    body = _assert_refused(response)
    assert "device_id" in body["error"]["fields"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/devices/99999999999999999999",
        "/api/v1/devices/" + "5" * 5000,
        f"/api/v1/devices/{MAX_ID + 1}",
        "/api/v1/incidents/99999999999999999999",
    ],
)
def test_api_ids_out_of_range_are_404(client: Any, admin_token: str, path: str) -> None:
    _assert_refused(client.get(path, headers=bearer(admin_token)), 404)


def test_query_ids_out_of_range_are_400(client: Any, admin_token: str) -> None:
    response = client.get("/api/v1/incidents?device_id=" + "5" * 5000, headers=bearer(admin_token))
    body = _assert_refused(response)
    assert "device_id" in body["error"]["fields"]


@pytest.mark.parametrize(
    "path",
    [
        "/console/devices/99999999999999999999",
        "/console/devices/" + "9" * 5000,
        f"/console/devices/{MAX_ID + 1}",
        "/console/org-units/99999999999999999999",
        "/console/hotline/incidents/99999999999999999999",
        "/console/profiles/99999999999999999999",
        "/console/users/99999999999999999999",
        "/console/alerts/99999999999999999999",
    ],
)
def test_console_ids_out_of_range_are_404(
    client: Any,
    tree: Any,
    session_factory: Any,
    settings: Any,
    path: str,
) -> None:
    with session_factory() as session:
        admin = make_user(session, settings, "admin-hostile", "admin")
    login(client, admin)
    response = client.get(path)
    assert response.status_code == 404, response.data[:300]


def test_deep_json_typed_into_the_console_profile_form_is_a_form_error(
    client: Any,
    tree: Any,
    session_factory: Any,
    settings: Any,
) -> None:
    with session_factory() as session:
        admin = make_user(session, settings, "admin-hostile", "admin")
    login(client, admin)
    response = post_form(client, "/console/profiles", {"source": "spec", "spec": "[" * 5000 + "]" * 5000})
    assert response.status_code in (200, 400), response.data[:300]
    assert "JSON として正しくありません: JSON nested deeper than 32 levels" in response.data.decode()


def test_deep_json_body_to_the_console_is_400(client: Any, tree: Any) -> None:
    response = client.post(
        "/console/login", data="[" * DEEP + "]" * DEEP, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400


WIDE_INTEGERS = {("StoreAppIn", "itunes_store_id")}


def test_every_integer_input_of_the_api_is_bounded(client: Any) -> None:
    """Sweep: each integer a caller can send (path, query, body) has a maximum within the id
    range in the OpenAPI document, so no schema hands the database a number it cannot store."""
    spec = client.get("/api/v1/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    unbounded: list[str] = []

    def walk(schema: dict[str, Any], where: str, seen: frozenset[str] = frozenset()) -> None:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                walk(schemas[name], f"{where}<{name}>", seen | {name})
            return
        if schema.get("readOnly"):
            return
        if schema.get("type") == "integer" and not (
            "maximum" in schema and schema["maximum"] <= MAX_ID and "minimum" in schema
        ):
            unbounded.append(where)
        for key, inner in schema.get("properties", {}).items():
            walk(inner, f"{where}.{key}", seen)
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                walk(schema[key], f"{where}[{key}]", seen)
        for key in ("allOf", "anyOf", "oneOf"):
            for inner in schema.get(key, []):
                walk(inner, where, seen)

    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or method == "parameters":
                continue
            for parameter in operation.get("parameters", []) + operations.get("parameters", []):
                walk(parameter.get("schema", {}), f"{method.upper()} {path} {parameter['name']}")
            for media in operation.get("requestBody", {}).get("content", {}).values():
                walk(media.get("schema", {}), f"{method.upper()} {path} body")
    # Apple's App Store ids (adamId) are past 2**31 and stored as BIGINT: bounded by 2**53 instead,
    # the range a JSON number holds exactly.
    for schema_name, field_name in WIDE_INTEGERS:
        spec_field = schemas[schema_name]["properties"][field_name]
        if spec_field.get("maximum", 2**64) <= 2**53 and "minimum" in spec_field:
            unbounded = [u for u in unbounded if not u.endswith(f"<{schema_name}>.{field_name}")]
    assert not unbounded, "integers without bounds: " + ", ".join(sorted(set(unbounded)))
