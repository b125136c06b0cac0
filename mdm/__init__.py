"""Hikeshi MDM core.

`create_app` imports lazily: importing `mdm.ground.models` or `mdm.ground.clock` must not pull the whole
application (and the web layer) in, or the layer rule could not hold.

Hikeshi's top-level packages have generic names (`web`, `commands`, ...) that other
distributions use too (`web.py` installs `web`). `hikeshi` and `create_app` refuse to start when
one of them is not the one installed beside this `mdm`, before importing it, so a clash is a
one-line error naming the file instead of a strange failure later.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from mdm.roots.distribution import PackageClash, package_clash, refuse_package_clash

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["PackageClash", "create_app", "main", "package_clash"]


def main() -> None:
    """The `hikeshi` console script: the check runs before any other package is imported (a
    shadowed `commands` would otherwise fail inside `mdm.roots.cli`'s own imports)."""
    problem = package_clash()
    if problem is not None:
        print(f"Error: {problem}", file=sys.stderr)
        raise SystemExit(1)
    from mdm.roots.cli import main as cli

    cli()


def create_app(settings: Any = None, **overrides: Any) -> Flask:
    refuse_package_clash()
    from mdm.roots.app import build_app

    return build_app(settings, **overrides)
