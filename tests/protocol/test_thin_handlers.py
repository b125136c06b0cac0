"""Device handlers are thin (DESIGN.md): authenticate, decode, ONE service call, encode.

Read from the source: each handler module of the device doors takes from the services layer
only its platform's channel (mdm.services.apple_channel, mdm.services.android_channel), and each
handler function calls exactly one of that channel's functions. Exceptions, dataclasses and
constants of the channel may be named freely; a second call of a service function is what fails.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

from tests.test_architecture import _modules, imports_of, layer_of

# (handler module, its channel) → {handler function: the one service function it calls}
HANDLERS: dict[tuple[str, str], dict[str, str]] = {
    ("mdm.doors.apple.checkin", "mdm.services.apple_channel"): {"checkin": "checkin"},
    ("mdm.doors.apple.connect", "mdm.services.apple_channel"): {"connect": "connect"},
    ("mdm.doors.apple.answers", "mdm.services.apple_channel"): {"oversized_answer": "answer_too_large"},
    ("mdm.doors.android.http", "mdm.services.android_channel"): {
        "enroll": "enroll",
        "sync_view": "sync",
        "wait": "start_wait",
        "_pending": "commands_waiting",
        "wifi_certificate": "issue_wifi_certificate",
    },
}
ROUTE_DECORATORS = {"route", "get", "post", "put", "patch", "delete"}


def service_calls(source: str, channel: str) -> dict[str, list[str]]:
    """For each top-level function of `source`: the functions of the services layer it calls, in
    order, through a module (`apple_channel.connect(...)`, named by the function alone for the
    channel) or by a name imported from a service module. Classes (exceptions, results) do not
    count."""
    tree = ast.parse(source)
    known = set(_modules())
    modules: dict[str, str] = {}  # local name → a service module (`from mdm.services import devices`)
    imported: dict[str, str] = {}  # local name → "module.attribute" of a service function
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if layer_of(alias.name) == "services" and alias.asname:
                    modules[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                local, full = alias.asname or alias.name, f"{node.module}.{alias.name}"
                if full in known and layer_of(full) == "services":
                    modules[local] = full
                elif layer_of(node.module) == "services" and _is_function(node.module, alias.name):
                    imported[local] = full
    found: dict[str, list[str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        calls: list[tuple[int, int, str]] = []
        for call in ast.walk(node):
            if not isinstance(call, ast.Call):
                continue
            func, where = call.func, (call.lineno, call.col_offset)
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                module = modules.get(func.value.id)
                if module is not None and _is_function(module, func.attr):
                    calls.append((*where, func.attr if module == channel else f"{module}.{func.attr}"))
            elif isinstance(func, ast.Name) and func.id in imported:
                calls.append((*where, imported[func.id]))
        found[node.name] = [name for _line, _col, name in sorted(calls)]
    return found


def _is_function(module: str, name: str) -> bool:
    try:
        value = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return False
    return callable(value) and not inspect.isclass(value)


def _routes(source: str) -> set[str]:
    routes = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(target, ast.Attribute) and target.attr in ROUTE_DECORATORS:
                    routes.add(node.name)
    return routes


def _source(module: str) -> str:
    return _modules()[module].read_text()


def test_each_device_handler_makes_exactly_one_service_call() -> None:
    for (module, channel), expected in HANDLERS.items():
        calls = service_calls(_source(module), channel)
        for handler, service in expected.items():
            assert calls.get(handler) == [service], f"{module}.{handler} calls {calls.get(handler)}"


def test_every_device_route_is_pinned() -> None:
    """A new device route joins HANDLERS (and so the rule); the catch-all 404 calls no service."""
    for (module, _channel), expected in HANDLERS.items():
        unpinned = _routes(_source(module)) - set(expected) - {"_unrouted"}
        assert unpinned == set(), f"{module}: routes without a pinned service call: {unpinned}"


def test_handler_modules_take_only_their_channel_from_the_services_layer() -> None:
    known = _modules()
    for module, channel in HANDLERS:
        services = {t for t in imports_of(module, known[module], known) if layer_of(t) == "services"}
        assert services and {t for t in services if not t.startswith(channel)} == set(), (
            f"{module} imports from the services layer {sorted(services)}; only {channel} is allowed"
        )


def test_the_rule_fails_on_a_fat_handler(tmp_path: Path) -> None:
    fat = """
from mdm.services import apple_channel, devices
from commands.delivery import next_command

def connect():
    try:
        apple_channel.connect(1, 2, 3, 4)
    except apple_channel.UnsupportedMessage:
        pass
    devices.touch(None)
    next_command(None, None, offer_not_now=True)
    raise apple_channel.IdentityRefused("x")
"""
    calls = service_calls(fat, "mdm.services.apple_channel")
    assert calls["connect"] == ["connect", "mdm.services.devices.touch", "commands.delivery.next_command"]
    path = tmp_path / "fat.py"
    path.write_text(fat)
    known = {*_modules(), "mdm.doors.apple.fat"}
    assert {"mdm.services.devices", "commands.delivery"} <= imports_of("mdm.doors.apple.fat", path, known)
