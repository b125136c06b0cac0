"""Issue 15 items 4 and 13, on a real `hikeshi serve`: enrollment secrets in request lines
(/enroll/<token>, the Android provisioning path, a token in a query string) never reach its
access log, and the application's own WARNINGs reach its stderr in the configured format."""

from __future__ import annotations

import json
import secrets
import subprocess

import httpx

from tests.core.test_serve import BIN, _env, _free_port, _healthy, _serve, _stop, _wait_for


def _records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_serve_logs_json_lines_without_enrollment_secrets(tmp_path):
    env = _env(tmp_path, HIKESHI_LOG_FORMAT="json", HIKESHI_PUSH_ENABLED="0")
    subprocess.run([str(BIN / "hikeshi"), "db", "upgrade"], env=env, check=True, capture_output=True)
    enroll_secret = secrets.token_urlsafe(24)
    android_secret = secrets.token_urlsafe(32)
    query_secret = secrets.token_urlsafe(16)
    port = _free_port()
    log = tmp_path / "serve.log"
    server = _serve(env, port, log, "--no-scheduler")
    try:
        _wait_for(lambda: _healthy(port), 60, "the server")
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/enroll/{enroll_secret}", timeout=10).status_code == 404
        assert httpx.get(f"{base}/enroll/{enroll_secret}/sheet", timeout=10).status_code == 404
        httpx.get(f"{base}/android/provisioning/{android_secret}/sheet", timeout=10)
        httpx.get(f"{base}/healthz?token={query_secret}", timeout=10)
        # An unsigned check-in is refused, and the refusal is logged as a WARNING by the app.
        refused = httpx.put(f"{base}/mdm/checkin", content=b"<plist/>", timeout=10)
        assert refused.status_code in (400, 401, 403)
        _wait_for(lambda: "/mdm/checkin" in log.read_text(errors="replace"), 30, "the access log line")
    finally:
        _stop(server)
    output = log.read_text(errors="replace")
    for secret in (enroll_secret, android_secret, query_secret):
        assert secret not in output
    records = _records(output)
    access = [r["message"] for r in records if r["logger"] == "gunicorn.access"]
    assert any("/enroll/[redacted]" in line for line in access), access
    assert any("/enroll/[redacted]/sheet" in line for line in access), access
    assert any("/android/provisioning/[redacted]/sheet" in line for line in access), access
    assert any("token=[redacted]" in line for line in access), access
    warnings = [r for r in records if r["level"] == "WARNING" and r["logger"].startswith("mdm.")]
    assert warnings, [r for r in records if r["logger"] != "gunicorn.access"]
    assert all({"time", "pid", "message"} <= set(r) for r in records)
    # Every line the server printed after start-up is one of those JSON records.
    started = output.index("Scheduler: off")
    stray = [line for line in output[started:].splitlines()[1:] if line and not line.startswith("{")]
    assert stray == []


def test_text_format_is_the_default_and_says_level_and_logger(tmp_path):
    env = _env(tmp_path, HIKESHI_PUSH_ENABLED="0")
    subprocess.run([str(BIN / "hikeshi"), "db", "upgrade"], env=env, check=True, capture_output=True)
    port = _free_port()
    log = tmp_path / "serve.log"
    secret = secrets.token_urlsafe(24)
    server = _serve(env, port, log, "--no-scheduler")
    try:
        _wait_for(lambda: _healthy(port), 60, "the server")
        httpx.put(f"http://127.0.0.1:{port}/mdm/checkin", content=b"<plist/>", timeout=10)
        httpx.get(f"http://127.0.0.1:{port}/enroll/{secret}", timeout=10)
        _wait_for(lambda: "/enroll/" in log.read_text(errors="replace"), 30, "the access log line")
    finally:
        _stop(server)
    output = log.read_text(errors="replace")
    assert secret not in output
    assert " WARNING [" in output and "] mdm.doors.apple.checkin: " in output
    assert " INFO [" in output and "gunicorn.access: " in output
