"""Configuration from one table (issue 17 item 5): Settings is built from mdm.ground.config.TABLE, a bad
value is refused in one line naming its variable, and no product module reads an environment
variable by name outside mdm/ground/config.py. The README side is in test_project_files.py."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mdm.ground.config import TABLE, SettingError, Settings

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("mdm", "enrollment", "profiles", "commands", "web")
BIN = Path(sys.executable).parent


def _product_files() -> list[Path]:
    return sorted(p for package in PRODUCT for p in (ROOT / package).rglob("*.py"))


def test_every_settings_field_comes_from_exactly_one_row_of_the_table():
    # Not settable from the environment: APNs' own expiry limit, and what tests and code pass in.
    fields = {f.name for f in dataclasses.fields(Settings)} - {"apns_expiration_seconds", "extra"}
    attributes = [s.attribute for s in TABLE if s.attribute is not None]
    assert sorted(attributes) == sorted(set(attributes)), "two rows fill the same field"
    assert set(attributes) == fields
    names = [s.name for s in TABLE]
    assert len(names) == len(set(names)) and all(n.startswith("HIKESHI_") for n in names)
    assert all(s.meaning.strip() for s in TABLE)


def test_the_table_defaults_are_the_settings_defaults(tmp_path: Path):
    """The dataclass keeps its defaults (code builds Settings(...) directly); the table says the same."""
    built = Settings.from_env(environ={"HIKESHI_INSTANCE_PATH": str(tmp_path / "inst")})
    compared = 0
    for field in dataclasses.fields(Settings):
        if field.default is dataclasses.MISSING:
            continue
        assert getattr(built, field.name) == field.default, field.name
        compared += 1
    assert compared > 60
    assert built.instance_path == (tmp_path / "inst").resolve()
    assert built.database_url == f"sqlite:///{built.instance_path / 'hikeshi.db'}"
    assert (built.instance_path / "secret_key").read_text().strip() == built.secret_key


def test_set_values_are_parsed_by_their_type(tmp_path: Path):
    built = Settings.from_env(
        environ={
            "HIKESHI_INSTANCE_PATH": str(tmp_path),
            "HIKESHI_SECRET_KEY": "s" * 40,
            "HIKESHI_APNS_TIMEOUT": "2.5",
            "HIKESHI_SMTP_PORT": " 25 ",
            "HIKESHI_PUSH_ENABLED": "No",
            "HIKESHI_DEV_INSECURE_HTTP": "on",
            "HIKESHI_PUBLIC_URL": "https://mdm.example.jp/",
            "HIKESHI_ALERT_EMAIL_TO": "a@example.jp, ,b@example.jp",
            "HIKESHI_MQTT_TOPIC_PREFIX": "/fire/tablets/",
            "HIKESHI_BACKUP_DIR": str(tmp_path / "off-site"),
            "HIKESHI_ORGANIZATION": "",  # empty is unset
        }
    )
    assert built.apns_timeout_seconds == 2.5 and built.smtp_port == 25
    assert built.push_enabled is False and built.dev_insecure_http is True
    assert built.public_url == "https://mdm.example.jp"
    assert built.alert_email_to == ("a@example.jp", "b@example.jp")
    assert built.mqtt_topic_prefix == "fire/tablets"
    assert built.backup_directory == (tmp_path / "off-site").resolve()
    assert built.organization_name == "Hikeshi MDM"
    assert built.secret_key == "s" * 40 and not (tmp_path / "secret_key").exists()


BAD_VALUES = [
    ("HIKESHI_APNS_TIMEOUT", "abc"),
    ("HIKESHI_WEBHOOK_TIMEOUT", "nan"),
    ("HIKESHI_SCHEDULER_LOCK_POLL", "-1"),
    ("HIKESHI_SMTP_PORT", "25/tcp"),
    ("HIKESHI_COMMAND_EXPIRY_DAYS", "0"),
    ("HIKESHI_PUSH_ENABLED", "maybe"),
    ("HIKESHI_MAX_DEVICE_BODY", "1 MB"),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_a_bad_value_is_refused_in_one_line_naming_the_variable(tmp_path: Path, name: str, value: str):
    with pytest.raises(SettingError) as refused:
        Settings.from_env(environ={"HIKESHI_INSTANCE_PATH": str(tmp_path), name: value})
    message = str(refused.value)
    assert message.startswith(f"{name} must ") and "\n" not in message


def test_settings_read_where_they_are_used_refuse_bad_values_too():
    by_name = {s.name: s for s in TABLE}
    for name, value in (("HIKESHI_LOG_FORMAT", "xml"), ("HIKESHI_LOG_LEVEL", "LOUD")):
        with pytest.raises(SettingError, match=f"^{name} must be one of"):
            by_name[name].read({name: value})
    assert by_name["HIKESHI_LOG_LEVEL"].read({}) is None  # the caller's default applies
    assert by_name["HIKESHI_LOG_FORMAT"].read({"HIKESHI_LOG_FORMAT": "JSON"}) == "json"


@pytest.mark.parametrize(
    ("command", "name", "value", "message"),
    [
        ("audit verify", "HIKESHI_APNS_TIMEOUT", "abc", "must be a number of seconds, not 'abc'"),
        ("audit verify", "HIKESHI_LOG_FORMAT", "xml", "must be one of text, json, not 'xml'"),
        ("serve --port 1", "HIKESHI_SCHEDULER_IN_SERVE", "perhaps", "must be 1 or 0"),
    ],
)
def test_the_cli_prints_the_refusal_as_one_line_and_exits_1(
    tmp_path: Path, command: str, name: str, value: str, message: str
):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIKESHI_")}
    env.update({"HIKESHI_INSTANCE_PATH": str(tmp_path), name: value})
    result = subprocess.run(
        [str(BIN / "hikeshi"), *command.split()], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"Error: {name} {message}"), result.stderr


_ENV_READERS = {"environ", "getenv", "environb", "putenv", "unsetenv"}


def _env_reads(tree: ast.AST) -> list[str]:
    """Places where a module reads (or sets) one environment variable by name. Handing the whole
    environment to a child process (`dict(os.environ)`) names none and is allowed."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            names = [a.name for a in node.names if a.name in _ENV_READERS]
            found += [f"line {node.lineno}: from os import {name}" for name in names]
        if isinstance(node, ast.keyword) and node.arg in ("envvar", "auto_envvar_prefix"):
            found.append(f"line {node.value.lineno}: click {node.arg}=")
        if isinstance(node, ast.Attribute) and node.attr in _ENV_READERS:
            if not (isinstance(node.value, ast.Name) and node.value.id == "os"):
                continue
            parent = parents.get(node)
            whole = (
                node.attr == "environ"
                and isinstance(parent, ast.Call)
                and isinstance(parent.func, ast.Name)
                and parent.func.id == "dict"
                and parent.args == [node]
            )
            if not whole:
                found.append(f"line {node.lineno}: os.{node.attr}")
    return found


def test_the_env_read_detector_sees_every_way_of_reading():
    source = (
        "import os\nfrom os import getenv\na = os.environ.get('X')\nb = os.environ['X']\n"
        "c = 'X' in os.environ\nd = os.getenv('X')\nclick.option('--x', envvar='X')\n"
        "child = dict(os.environ)\n"
    )
    assert len(_env_reads(ast.parse(source))) == 6


def test_no_product_module_but_config_reads_an_environment_variable_by_name():
    offenders = {}
    for path in _product_files():
        if path == ROOT / "mdm" / "ground" / "config.py":
            continue
        found = _env_reads(ast.parse(path.read_text(), str(path)))
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}, "read settings through mdm.ground.config (a row of TABLE), not the environment"


def test_every_hikeshi_name_the_product_mentions_is_a_setting():
    """Error messages and docstrings name real settings; test-only variables
    (HIKESHI_TEST_DATABASE_URL, HIKESHI_APPLE_SCHEMA_DIR, ...) never appear in the product."""
    table = {s.name for s in TABLE}
    mentioned: dict[str, str] = {}
    for path in _product_files():
        for name in re.findall(r"\bHIKESHI_[A-Z0-9_]*[A-Z0-9]", path.read_text()):
            mentioned.setdefault(name, str(path.relative_to(ROOT)))
    assert len(mentioned) > 30
    unknown = {name: where for name, where in mentioned.items() if name not in table}
    assert unknown == {}


def test_every_row_read_outside_settings_is_read_somewhere():
    import mdm.ground.config as config

    handles = {id(value): key for key, value in vars(config).items() if isinstance(value, config.Setting)}
    product = "\n".join(p.read_text() for p in _product_files() if p != ROOT / "mdm" / "ground" / "config.py")
    for setting in TABLE:
        if setting.attribute is not None:
            continue  # read by Settings.from_env
        handle = handles.get(id(setting))
        assert handle is not None, f"{setting.name}: give it a module-level name in mdm/ground/config.py"
        assert re.search(rf"\b{handle}\.read\b", product), f"{setting.name} is never read"
