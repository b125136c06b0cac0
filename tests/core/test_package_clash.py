"""Hikeshi's generic top-level names (issue 17 item 7): `hikeshi` and `create_app` refuse to start,
naming the file, when one of its packages is not the one installed with it. Real processes with a
real PYTHONPATH, as an operator's machine would have them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def _env(pythonpath: Path | None, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIKESHI_") and k != "PYTHONPATH"}
    env["HIKESHI_INSTANCE_PATH"] = str(tmp_path / "instance")
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("package", "file"),
    [
        ("web", "web/__init__.py"),  # imported late, by the app factory
        ("commands", "commands/__init__.py"),  # imported by mdm.roots.cli itself
        ("profiles", "profiles.py"),  # a plain module shadows a package just as well
    ],
)
def test_hikeshi_refuses_a_shadowed_package_naming_the_file(tmp_path: Path, package: str, file: str):
    fake = tmp_path / "elsewhere"
    (fake / file).parent.mkdir(parents=True, exist_ok=True)
    (fake / file).write_text("raise SystemExit('the foreign package was imported')\n")
    result = _run([str(BIN / "hikeshi"), "--help"], _env(fake, tmp_path), tmp_path)
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = _error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert f"the package {package!r} would be loaded from {(fake / file).resolve()}" in lines[0]
    assert str(ROOT / package / "__init__.py") in lines[0] and "own virtual environment" in lines[0]
    assert "foreign package was imported" not in result.stderr
    assert not (tmp_path / "instance").exists()  # refused before anything was set up


def test_hikeshi_starts_when_every_package_is_its_own(tmp_path: Path):
    result = _run([str(BIN / "hikeshi"), "--help"], _env(None, tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Hikeshi MDM" in result.stdout


def test_create_app_refuses_a_shadowed_package(tmp_path: Path):
    fake = tmp_path / "elsewhere"
    (fake / "web").mkdir(parents=True)
    (fake / "web" / "__init__.py").write_text("")
    code = "import mdm\ntry:\n    mdm.create_app()\nexcept mdm.PackageClash as exc:\n    print(exc)\n"
    result = _run([sys.executable, "-c", code], _env(fake, tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"would be loaded from {(fake / 'web' / '__init__.py').resolve()}" in result.stdout
    assert not (tmp_path / "instance").exists()


def test_another_distribution_claiming_the_name_is_refused(tmp_path: Path):
    """Installed into the same folder, web.py's files would mix with Hikeshi's `web` without
    moving it: its metadata is what shows the clash."""
    site = tmp_path / "site"
    info = site / "web.py-0.62.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: web.py\nVersion: 0.62\n")
    (info / "RECORD").write_text("web/__init__.py,,\nweb/webapi.py,,\nweb.py-0.62.dist-info/METADATA,,\n")
    result = _run([str(BIN / "hikeshi"), "--help"], _env(site, tmp_path), tmp_path)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert _error_lines(result) == [
        f"Error: {ROOT / 'web' / '__init__.py'}: the package 'web' is also installed by web.py; "
        "install Hikeshi into its own virtual environment (README, Set up)"
    ]
