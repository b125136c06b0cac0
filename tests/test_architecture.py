"""The layer rule of DESIGN.md, checked on the source: arrows point down only.

Every module must be classified; a new package or module that fits no rule fails this test until
it is placed in a layer here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mdm", "enrollment", "profiles", "commands", "web")

# Composition roots wire the layers together and may import anything.
COMPOSITION = {"mdm", "mdm.app", "mdm.server", "mdm.cli"}
BOTTOM = (
    "mdm.models",
    "mdm.db",
    "mdm.clock",
    "mdm.config",
    "mdm.audit",
    "mdm.redaction",
    "mdm.logsetup",
    "mdm.secretbox",
    "mdm.push",
    "mdm.x509util",
    "mdm.health",
    "mdm.migrations",
    "mdm.transport",
)
TOP = (
    "web",
    "mdm.apple",
    "mdm.android",
    "enrollment.scep",
    "enrollment.http",
    "enrollment.cli",
    "commands.cli",
    "profiles.cli",
    "mdm.cli",
    "mdm.cli_errors",
    "mdm.server",
    "mdm.scheduler",
    "mdm.appctx",
    "mdm.http",
)
SERVICE = (
    "commands",
    "profiles",
    "enrollment",
    "mdm.devices",
    "mdm.orgunits",
    "mdm.inventory",
    "mdm.compliance",
    "mdm.continuity",
    "mdm.alerts",
    "mdm.incidents",
    "mdm.backup",
    "mdm.services",
)
RANK = {"bottom": 0, "service": 1, "top": 2}


def _matches(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def layer_of(module: str) -> str | None:
    if module in COMPOSITION:
        return "composition"
    if _matches(module, BOTTOM):
        return "bottom"
    if _matches(module, TOP):
        return "top"
    if _matches(module, SERVICE):
        return "service"
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


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            names.add(target)
            for alias in node.names:
                names.add(f"{target}.{alias.name}")
    return {n for n in names if n.split(".")[0] in PACKAGES}


def _own_module(name: str, known: dict[str, Path]) -> str | None:
    """The project module an imported name refers to (a name may be `pkg.mod.func`)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def test_every_module_is_in_a_layer() -> None:
    unplaced = sorted(m for m in _modules() if layer_of(m) is None)
    assert unplaced == [], f"place these modules in a layer in tests/test_architecture.py: {unplaced}"


def test_imports_point_down_only() -> None:
    known = _modules()
    violations: list[str] = []
    for module, path in sorted(known.items()):
        source_layer = layer_of(module)
        if source_layer in (None, "composition"):
            continue
        for name in sorted(_imports(module, path)):
            target = _own_module(name, known)
            if target is None or target == module:
                continue
            target_layer = layer_of(target)
            if target_layer == "composition":
                # `import mdm.x` executes mdm/__init__, which only defines a lazy create_app.
                if target == "mdm" and name != "mdm.create_app":
                    continue
                violations.append(f"{module} imports the composition root {target}")
                continue
            if target_layer is None:
                continue
            if _matches(target, ("web",)) and not _matches(module, ("web",)):
                violations.append(f"{module} imports web ({target}): nothing below web/ may")
            elif RANK[target_layer] > RANK[source_layer]:
                violations.append(f"{module} ({source_layer}) imports {target} ({target_layer})")
    assert violations == [], "layer rule broken:\n" + "\n".join(violations)


def test_services_and_core_do_not_speak_http() -> None:
    """Services take a Session and return values; only the top layer knows Flask."""
    offenders = []
    for module, path in _modules().items():
        if layer_of(module) not in ("bottom", "service"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            if any(n == "flask" or n.startswith("flask.") or n.startswith("flask_") for n in names):
                offenders.append(module)
    assert sorted(set(offenders)) == []


def test_the_checker_catches_a_violation(tmp_path: Path) -> None:
    """The rule itself can fail: a service importing the web layer is reported."""
    assert layer_of("commands.queue") == "service"
    assert layer_of("web.api.devices") == "top"
    assert RANK[layer_of("web.api.devices") or "top"] > RANK[layer_of("commands.queue") or "service"]
    bad = tmp_path / "bad.py"
    bad.write_text("from web.api import devices\nimport mdm.apple.connect\n")
    assert _imports("commands.bad", bad) >= {"web.api", "web.api.devices", "mdm.apple.connect"}
