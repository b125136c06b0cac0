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


# Variables only the test suite reads; they are named in the README's Set up section, never in
# its Configuration table nor in the product (test_settings_table.py checks the product side).
TEST_ONLY_VARIABLES = {
    "HIKESHI_TEST_DATABASE_URL",
    "HIKESHI_APPLE_SCHEMA_DIR",
    "HIKESHI_REQUIRE_APPLE_SCHEMA",
}


def _readme_configuration_table() -> tuple[set[str], set[str]]:
    """The names in the first column of the README's Configuration table, and all it names."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `HIKESHI_")]
    first_column = {name for row in rows for name in re.findall(r"`(HIKESHI_[A-Z0-9_]+)`", row.split("|")[1])}
    return first_column, set(re.findall(r"\bHIKESHI_[A-Z0-9_]*[A-Z0-9]", section))


def test_the_readme_configuration_table_is_the_settings_table():
    from mdm.ground.config import TABLE

    table = {setting.name for setting in TABLE}
    documented, named = _readme_configuration_table()
    assert len(documented) > 60  # the pattern still finds the rows
    assert sorted(table - documented) == [], "document these in the README's Configuration table"
    assert sorted(documented - table) == [], (
        "the README documents settings mdm/ground/config.py's TABLE lacks"
    )
    assert sorted(named - table) == [], "the Configuration table names variables that are not settings"


def test_every_variable_the_readme_names_is_a_setting_or_test_only():
    from mdm.ground.config import TABLE

    named = set(re.findall(r"\bHIKESHI_[A-Z0-9_]*[A-Z0-9]", (ROOT / "README.md").read_text()))
    assert sorted(named - {s.name for s in TABLE} - TEST_ONLY_VARIABLES) == []
    assert TEST_ONLY_VARIABLES <= named and not TEST_ONLY_VARIABLES & {s.name for s in TABLE}
