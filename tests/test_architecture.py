"""The layer rule of DESIGN.md, read from the paths alone and checked on the source.

A module's layer is where it lives, with no list of module names to keep up to date:

    mdm/roots/ (and mdm/__init__)   composition roots: app factory, CLI, server, scheduler
    web/, mdm/doors/                doors: people's (console, API), devices' (Apple, Android, SCEP)
    mdm/services/, commands/, enrollment/, profiles/     services
    mdm/ground/                     models, db, config, audit, clock, secrets, CA, push transport

Arrows point down, or sideways between two components of one layer as long as no cycle forms.
Nothing imports a composition root, nothing outside web/ imports web/, and one device door never
borrows another's code. There are no import cycles between modules nor between components.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mdm", "enrollment", "profiles", "commands", "web")
RANK = {"ground": 0, "services": 1, "doors": 2, "roots": 3}
SERVICE_PACKAGES = ("commands", "enrollment", "profiles")


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if module == "mdm":
        return "roots"
    if parts[0] == "mdm":
        return parts[1] if parts[1] in RANK else None
    if parts[0] in SERVICE_PACKAGES:
        return "services"
    if parts[0] == "web":
        return "doors"
    return None


def component_of(module: str) -> str:
    """The folder (or top-level module) a newcomer sees as one thing: mdm.services.continuity,
    mdm.doors.apple, commands, web.console, ... All composition roots are one component."""
    parts = module.split(".")
    if module == "mdm" or parts[:2] == ["mdm", "roots"]:
        return "mdm.roots"
    if parts[0] == "mdm":
        return ".".join(parts[:3])
    if parts[0] in SERVICE_PACKAGES:
        return parts[0]
    return ".".join(parts[:2])


def _device_door(module: str) -> str | None:
    """The device door (a subpackage of mdm/doors) a module belongs to, if any."""
    parts = module.split(".")
    if parts[:2] == ["mdm", "doors"] and len(parts) >= 3 and (ROOT / "mdm/doors" / parts[2]).is_dir():
        return parts[2]
    return None


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _own_module(name: str, known: Iterable[str]) -> str | None:
    """The project module an imported name refers to (a name may be `pkg.mod.func`)."""
    known = set(known)
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, known: Iterable[str]) -> set[str]:
    """The project modules `module` imports, lazily or not. `from pkg import mod` depends on
    pkg.mod; `from pkg import name` depends on pkg."""
    known = set(known)
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                targets.add(submodule if submodule in known else source)
    owned = {_own_module(t, known) for t in targets if t.split(".")[0] in PACKAGES}
    return {t for t in owned if t is not None and t != module}


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {module: imports_of(module, path, known) for module, path in known.items()}


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    found: list[str] = []
    for module, targets in sorted(graph.items()):
        source = layer_of(module)
        if source is None:
            continue
        for target in sorted(targets):
            layer = layer_of(target)
            if layer is None:
                continue
            if layer == "roots" and source != "roots":
                found.append(f"{module} imports the composition root {target}")
            elif target.split(".")[0] == "web" and module.split(".")[0] != "web" and source != "roots":
                found.append(f"{module} imports web ({target}): nothing outside web/ may")
            elif RANK[layer] > RANK[source]:
                found.append(f"{module} ({source}) imports {target} ({layer}): arrows point down")
            elif (door := _device_door(module)) and _device_door(target) not in (None, door):
                found.append(f"{module} borrows from another device door: {target}")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                member = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    member.append(top)
                    if top == node:
                        break
                if len(member) > 1:
                    found.append(sorted(member))
    return found


def component_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    components: dict[str, set[str]] = {}
    for module, targets in graph.items():
        source = component_of(module)
        edges = components.setdefault(source, set())
        edges.update(component_of(t) for t in targets if component_of(t) != source)
    return components


def test_every_module_is_in_a_layer() -> None:
    unplaced = sorted(m for m in _modules() if layer_of(m) is None)
    assert unplaced == [], f"these modules live outside mdm/{{ground,services,doors,roots}}/: {unplaced}"


def test_imports_point_down_only() -> None:
    violations = layer_violations(_graph())
    assert violations == [], "layer rule broken:\n" + "\n".join(violations)


def test_no_import_cycles_between_modules() -> None:
    assert cycles(_graph()) == []


def test_no_cycles_between_components() -> None:
    assert cycles(component_graph(_graph())) == []


def test_services_and_ground_do_not_speak_http() -> None:
    """Services take a Session and return values; only the doors and the roots know Flask."""
    offenders = []
    for module, path in _modules().items():
        if layer_of(module) not in ("ground", "services"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            if any(n == "flask" or n.startswith(("flask.", "flask_")) for n in names):
                offenders.append(module)
    assert sorted(set(offenders)) == []


def test_the_checker_catches_each_kind_of_violation(tmp_path: Path) -> None:
    """The rules themselves can fail."""
    known = set(_modules())
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from web.api import devices\nimport mdm.doors.apple.connect\nfrom mdm.roots import app\n"
        "def later():\n    from mdm.ground import clock\n"
    )
    found = imports_of("commands.bad", bad, known | {"commands.bad"})
    assert found == {"web.api.devices", "mdm.doors.apple.connect", "mdm.roots.app", "mdm.ground.clock"}
    graph = {
        "commands.bad": found,
        "mdm.ground.bad": {"mdm.services.devices"},
        "mdm.doors.android.bad": {"mdm.doors.apple.checkin"},
    }
    violations = "\n".join(layer_violations(graph))
    assert "commands.bad imports web (web.api.devices)" in violations
    assert "commands.bad (services) imports mdm.doors.apple.connect (doors)" in violations
    assert "commands.bad imports the composition root mdm.roots.app" in violations
    assert "mdm.ground.bad (ground) imports mdm.services.devices (services)" in violations
    assert "mdm.doors.android.bad borrows from another device door" in violations
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert component_of("mdm.services.continuity.spares") == "mdm.services.continuity"
    assert component_of("commands.incidents.service") == "commands"
    assert layer_of("mdm.somewhere") is None
