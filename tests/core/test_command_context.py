"""The commands' context is passed, never found (issue 17, item 4: no settings through session.info).

What a command needs beyond the Session (the settings that sign a wipe certificate and give a
command its lifetime, the profile services) is a CommandContext the wiring builds. Every function
that needs it takes it as `context`, with NO_CONTEXT as the default for tests that drive a
service alone; so a product caller that forgot it would run with the defaults, silently. Read
from the source: every call in the product packages of a function taking a `context:
CommandContext` passes one.
"""

from __future__ import annotations

import ast
from pathlib import Path

from commands import context as command_context

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("mdm", "web", "commands", "enrollment", "profiles")


def _product_files() -> list[Path]:
    return [
        path
        for package in PRODUCT
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    ]


def _defaulted_context(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int | bool | None:
    """Where a `context: CommandContext` with a default stands among the positional parameters
    (None: keyword only), or False when the function has none. A context without a default is
    left to mypy, which refuses a call that does not pass it."""
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    positional_defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    for index, (arg, default) in enumerate(
        [
            *zip(positional, positional_defaults, strict=True),
            *zip(args.kwonlyargs, args.kw_defaults, strict=True),
        ]
    ):
        annotation = ast.unparse(arg.annotation) if arg.annotation is not None else ""
        if arg.arg == "context" and "CommandContext" in annotation and default is not None:
            return index if index < len(positional) else None
    return False


def context_takers(files: list[Path]) -> dict[str, set[int | None]]:
    """Function name → where its defaulted `context` stands. A name that some other product
    function bears without one (`connect`, `_refuse`) is left out: a call cannot say which it is."""
    found: dict[str, set[int | None]] = {"DeliveryContext": {2}}
    without: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                where = _defaulted_context(node)
                if where is False:
                    if not node.decorator_list:  # a route or a property is not called by its name
                        without.add(node.name)
                    continue
                # A method's `self` is not passed at the call.
                is_method = bool(node.args.args) and node.args.args[0].arg == "self"
                index = where - 1 if is_method and isinstance(where, int) else where
                found.setdefault(node.name, set()).add(index)
    return {name: where for name, where in found.items() if name not in without}


def calls_without_context(source: str, takers: dict[str, set[int | None]], name: str = "<src>") -> list[str]:
    missing = []
    for node in ast.walk(ast.parse(source, name)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        callee = (
            func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        )
        if callee not in takers:
            continue
        if any(kw.arg == "context" or kw.arg is None for kw in node.keywords):
            continue
        if any(isinstance(index, int) and len(node.args) > index for index in takers[callee]):
            continue
        missing.append(f"{name}:{node.lineno} {callee}(...)")
    return missing


def test_every_product_call_passes_the_commands_context() -> None:
    files = _product_files()
    takers = context_takers(files)
    assert {"enqueue_command", "enqueue_commands", "record_result", "lock_now", "reconcile_devices"} <= set(
        takers
    )
    missing = [
        problem
        for path in files
        for problem in calls_without_context(path.read_text(), takers, str(path.relative_to(ROOT)))
    ]
    assert missing == [], "calls that leave the CommandContext to its default:\n" + "\n".join(missing)


def test_the_rule_fails_on_a_forgotten_context() -> None:
    takers = {"enqueue_command": {None}, "on_result": {3}, "DeliveryContext": {2}}
    source = """
enqueue_command(session, device, "DeviceLock", {}, actor=actor)
enqueue_command(session, device, "DeviceLock", {}, actor=actor, context=context)
kind.on_result(session, command, report, context)
kind.on_result(session, command, report)
DeliveryContext(device, key)
DeliveryContext(device, key, context)
"""
    assert calls_without_context(source, takers) == [
        "<src>:2 enqueue_command(...)",
        "<src>:5 on_result(...)",
        "<src>:6 DeliveryContext(...)",
    ]


def test_no_session_carries_the_context() -> None:
    """The session.info fallback is gone: nothing to attach, nothing to look up."""
    assert not hasattr(command_context, "attach_to_sessions")
    assert not hasattr(command_context, "context_of")
    for path in _product_files():
        text = path.read_text()
        assert 'command_context"' not in text and "hikeshi.command_context" not in text, path
