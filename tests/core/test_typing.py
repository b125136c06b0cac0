"""mypy finds no error in the product packages, with the configuration in pyproject.toml."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = {"mdm", "enrollment", "profiles", "commands", "web"}

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None, reason="mypy is not installed (pip install -e '.[test]')"
)


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]


def _mypy(*args: str) -> subprocess.CompletedProcess[str]:
    # A cache outside the tree, kept between runs of this checkout: a warm run takes seconds. One
    # for each database a run is on: CI runs the suite on both at once, and mypy's cache is not
    # written safely by two processes.
    run = f"{ROOT}|{os.environ.get('HIKESHI_TEST_DATABASE_URL', '')}"
    key = hashlib.sha256(run.encode()).hexdigest()[:12]
    cache = Path(tempfile.gettempdir()) / f"hikeshi-mypy-cache-{key}"
    config = str(ROOT / "pyproject.toml")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", config, "--cache-dir", str(cache), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_config_covers_every_product_package_without_hiding_errors():
    config = _config()
    assert set(config["packages"]) == PRODUCT_PACKAGES
    assert config.get("check_untyped_defs") is True
    # Errors are fixed, not switched off: no global escape hatches.
    for hatch in ("ignore_errors", "ignore_missing_imports", "follow_imports", "disable_error_code"):
        assert hatch not in config, hatch
    for override in config.get("overrides", []):
        assert "ignore_errors" not in override
        modules = override["module"] if isinstance(override["module"], list) else [override["module"]]
        # Missing stubs are tolerated only for third-party libraries, never for our own code.
        assert not any(m.split(".")[0] in PRODUCT_PACKAGES for m in modules), modules


def test_product_packages_have_no_type_errors():
    result = _mypy()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_the_check_catches_an_optional_index_in_an_untyped_function(tmp_path):
    # The control: the same configuration reports the kind of bug it was brought in to find.
    module = tmp_path / "optional_index.py"
    module.write_text(
        "def unit_of(events):\n"
        "    computed: dict[int, str] = {}\n"
        "    unit_id: int | None = events.get('unit')\n"
        "    return computed[unit_id]\n"
    )
    result = _mypy(str(module))
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'Invalid index type "int | None"' in result.stdout
