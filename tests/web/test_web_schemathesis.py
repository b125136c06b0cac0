"""schemathesis against /api/v1/openapi.json on a live server with every check: no 5xx, no
response that breaks the schema, its status codes, content types or headers, schema-violating
requests refused and valid ones accepted (tests/web/schemathesis.toml lists the operations whose
rules the schema cannot state); a bounded number of examples per operation, so it fits in CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.web.helpers import live_server, make_token

MAX_EXAMPLES = os.environ.get("HIKESHI_SCHEMATHESIS_EXAMPLES", "20")
CHECKS = "all"
CONFIG = Path(__file__).with_name("schemathesis.toml")


def _schemathesis() -> str:
    path = Path(sys.executable).with_name("schemathesis")
    if not path.exists():
        pytest.fail("schemathesis is not installed in the virtualenv (pip install -e '.[test]')")
    return str(path)


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    app: Any, tree: Any, session_factory: Any, tmp_path: Path
) -> None:
    with session_factory() as session:
        token = make_token(session, "admin", name="schemathesis")
    report = tmp_path / "report"
    with live_server(app) as base:
        result = subprocess.run(
            [
                _schemathesis(),
                "--config-file",
                str(CONFIG),
                "run",
                f"{base}/api/v1/openapi.json",
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                CHECKS,
                "--max-examples",
                MAX_EXAMPLES,
                "--seed",
                "20261123",
                "--workers",
                "1",
                "--request-timeout",
                "30",
                "--report",
                "ndjson",
                "--report-dir",
                str(report),
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,  # its caches (.schemathesis, .hypothesis) stay out of the repository
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert "No issues found" in output or "passed" in output, output[-4000:]
    lines = [
        json.loads(line) for path in report.glob("*.ndjson") for line in path.read_text().splitlines() if line
    ]
    assert lines, "schemathesis wrote no report"
