"""External tools and services the tests use: skip with a reason on a developer machine, fail in CI.

CI (the variable CI set) installs every tool the suite needs, so a missing tool there is a broken
CI script, not a reason to skip.
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def skip_or_fail(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (CI must provide it)")
    pytest.skip(reason)


def require_tool(name: str, package: str | None = None) -> str:
    """Path of a command-line tool, or skip (fail under CI) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"`{name}` is not installed (Debian package {package or name})")
    assert path is not None
    return path
