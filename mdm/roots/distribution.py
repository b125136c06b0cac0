"""Why this installation must not start: one of Hikeshi's generic top-level packages (`web`,
`commands`, ...) resolves to another distribution's files. Standard library only, because it runs
before any other Hikeshi package is imported."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from pathlib import Path

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
    home = Path(__file__).resolve().parents[2]
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
