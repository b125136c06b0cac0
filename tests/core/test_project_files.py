"""The README's two commands, CI and docker/ stay true to each other."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", text)


def test_readme_gives_exactly_two_setup_commands():
    commands = _readme_commands()
    assert len(commands) == 2
    start, test = commands
    assert "hikeshi db upgrade" in start and "hikeshi serve" in start
    assert "pytest" in test


def test_ci_runs_the_readme_test_command_and_postgres():
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = _readme_commands()[1]
    assert test_command in ci
    assert "HIKESHI_TEST_DATABASE_URL=" in ci
    assert "set -euo pipefail" in ci
    for package in ("scep", "openssl", "zbar-tools", "chromium"):
        assert package in ci


def test_compose_file_parses_and_names_the_services():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"app", "db"} <= set(services)
    assert services["db"]["image"].startswith("postgres")
    app_command = " ".join(services["app"]["command"])
    assert "hikeshi db upgrade" in app_command and "hikeshi serve" in app_command
    assert services["app"]["environment"]["HIKESHI_DATABASE_URL"].startswith("postgresql+psycopg://")


def test_dockerfile_runs_as_non_root_with_the_same_commands():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(r"^USER hikeshi$", dockerfile, re.M)
    assert "hikeshi db upgrade" in dockerfile and "hikeshi serve" in dockerfile


def test_every_setting_read_from_the_environment_is_in_the_readme():
    read = set(re.findall(r'"(HIKESHI_[A-Z0-9_]+)"', (ROOT / "mdm" / "config.py").read_text()))
    assert len(read) > 40  # the pattern still finds the settings
    readme = (ROOT / "README.md").read_text()
    missing = sorted(name for name in read if f"`{name}`" not in readme)
    assert missing == [], f"document these in the README's Configuration table: {missing}"
