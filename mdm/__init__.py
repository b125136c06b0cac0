"""Hikeshi MDM core.

`create_app` imports lazily: importing `mdm.models` or `mdm.clock` must not pull the whole
application (and the web layer) in, or the layer rule could not hold.

Hikeshi's top-level packages have generic names (`web`, `commands`, ...) that other
distributions use too (`web.py` installs `web`). `hikeshi` and `create_app` refuse to start when
one of them is not the one installed beside this `mdm`, before importing it, so a clash is a
one-line error naming the file instead of a strange failure later.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

PACKAGES = ("mdm", "enrollment", "profiles", "commands", "web")
DISTRIBUTION = "hikeshi"


class PackageClash(RuntimeError):
    """One of Hikeshi's packages is not Hikeshi's own."""


@functools.cache
def _other_owners() -> dict[str, list[str]]:
    # Another distribution installed into the same folder overwrites or mixes files without
    # moving the package, so its metadata is the only trace. Read once a process (tens of ms).
    owners = importlib.metadata.packages_distributions()
    return {name: sorted({d for d in owners.get(name, []) if d.lower() != DISTRIBUTION}) for name in PACKAGES}


def package_clash() -> str | None:
    """Why this installation must not start (naming the file), or None when all is Hikeshi's own."""
    home = Path(__file__).resolve().parent.parent
    advice = "install Hikeshi into its own virtual environment (README, Set up)"
    for name in PACKAGES:
        expected = home / name / "__init__.py"
        spec = importlib.util.find_spec(name)
        found = Path(spec.origin).resolve() if spec is not None and spec.origin else None
        if found != expected:
            return (
                f"the package {name!r} would be loaded from {found or 'nowhere'}, not from Hikeshi's "
                f"{expected}: another distribution or a PYTHONPATH entry shadows it; {advice}"
            )
    for name, others in _other_owners().items():
        if others:
            return (
                f"{home / name / '__init__.py'}: the package {name!r} is also installed by "
                f"{', '.join(others)}; {advice}"
            )
    return None


def refuse_package_clash() -> None:
    problem = package_clash()
    if problem is not None:
        raise PackageClash(problem)


def main() -> None:
    """The `hikeshi` console script: the check runs before any other package is imported (a
    shadowed `commands` would otherwise fail inside `mdm.cli`'s own imports)."""
    problem = package_clash()
    if problem is not None:
        print(f"Error: {problem}", file=sys.stderr)
        raise SystemExit(1)
    from mdm.cli import main as cli

    cli()


def create_app(settings: Any = None, **overrides: Any) -> Flask:
    refuse_package_clash()
    from mdm.app import build_app

    return build_app(settings, **overrides)
