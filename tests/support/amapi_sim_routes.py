"""Matching an HTTP request to a method of a discovery document, and checking its parameters.

Each method of androidmanagement.v1.json / pubsub.v1.json becomes a `Route`: its id (e.g.
`androidmanagement.enterprises.devices.get`), httpMethod, a regex built from its flatPath (path
segments never contain "/" and, before a `:verb`, never ":"), the `{+name}`-style template of
`path` to recover the path parameters, and the parameter and request/response schema specs.
`query_problems` checks the query string: unknown parameters, repeated non-repeated ones,
integers, booleans, enums and patterns, as Google's front end does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from tests.support.amapi_schema import AMAPI, PUBSUB, discovery_document

# Parameters every Google API accepts (the document's top-level `parameters`) are read from it;
# these are the ones whose value changes nothing in the simulator.


@dataclass(frozen=True)
class Route:
    method_id: str
    http_method: str
    pattern: re.Pattern[str]
    template: re.Pattern[str]
    parameters: dict[str, dict[str, Any]]
    request: str | None
    response: str | None
    scopes: tuple[str, ...]
    document: str

    def path_params(self, path: str) -> dict[str, str]:
        match = self.template.match(path)
        return dict(match.groupdict()) if match else {}


def _flat_regex(flat_path: str) -> re.Pattern[str]:
    out = ""
    for piece in re.split(r"(\{[^}]+\})", flat_path):
        if piece.startswith("{"):
            out += r"[^/:]+"
        else:
            out += re.escape(piece)
    return re.compile("^" + out + "$")


def _template_regex(path: str) -> re.Pattern[str]:
    out = ""
    for piece in re.split(r"(\{[^}]+\})", path):
        if piece.startswith("{+"):
            out += f"(?P<{piece[2:-1]}>.+?)"
        elif piece.startswith("{"):
            out += f"(?P<{piece[1:-1]}>[^/]+)"
        else:
            out += re.escape(piece)
    return re.compile("^" + out + "$")


def _walk(resources: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for resource in resources.values():
        found.extend(resource.get("methods", {}).values())
        found.extend(_walk(resource.get("resources", {})))
    return found


@cache
def routes(document: str) -> tuple[Route, ...]:
    doc = discovery_document(document)
    table = []
    for method in _walk(doc["resources"]):
        table.append(
            Route(
                method_id=method["id"],
                http_method=method["httpMethod"],
                pattern=_flat_regex(method.get("flatPath", method["path"])),
                template=_template_regex(method["path"]),
                parameters=method.get("parameters", {}),
                request=(method.get("request") or {}).get("$ref"),
                response=(method.get("response") or {}).get("$ref"),
                scopes=tuple(method.get("scopes", ())),
                document=document,
            )
        )
    return tuple(table)


def match(document: str, http_method: str, path: str) -> tuple[Route | None, bool]:
    """(route, path_known): the route for method+path, or None and whether the path exists at all."""
    path_known = False
    for route in routes(document):
        if route.pattern.match(path):
            path_known = True
            if route.http_method == http_method:
                return route, True
    return None, path_known


def _check_value(name: str, value: str, spec: dict[str, Any]) -> str | None:
    kind = spec.get("type", "string")
    if kind == "integer":
        if not re.fullmatch(r"-?\d{1,10}", value):
            return f"Invalid value at '{name}' (TYPE_INT32), \"{value}\""
    elif kind == "boolean":
        if value not in ("true", "false"):
            return f"Invalid value at '{name}' (TYPE_BOOL), \"{value}\""
    if "enum" in spec and value not in spec["enum"]:
        return f"Invalid value at '{name}', \"{value}\" is not one of {spec['enum']}"
    if "pattern" in spec and not re.search(spec["pattern"], value):
        return f"Invalid value at '{name}': {value!r} does not match {spec['pattern']}"
    return None


def query_problems(route: Route, query: dict[str, list[str]]) -> list[str]:
    general = discovery_document(route.document)["parameters"]
    problems: list[str] = []
    for name, values in query.items():
        spec = route.parameters.get(name)
        if spec is None or spec.get("location") != "query":
            spec = general.get(name)
        if spec is None:
            problems.append(
                f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query parameter.'
            )
            continue
        if len(values) > 1 and not spec.get("repeated"):
            problems.append(f"Parameter '{name}' is not repeated but was given {len(values)} times.")
        for value in values:
            problem = _check_value(name, value, spec)
            if problem:
                problems.append(problem)
    return problems


def path_problems(route: Route, params: dict[str, str]) -> list[str]:
    problems = []
    for name, value in params.items():
        problem = _check_value(name, value, route.parameters.get(name, {}))
        if problem:
            problems.append(problem)
    return problems


DOCUMENTS = {"androidmanagement": AMAPI, "pubsub": PUBSUB}
