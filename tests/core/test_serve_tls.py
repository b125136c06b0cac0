"""`hikeshi serve --certfile/--keyfile` answers a real TLS request, and `hikeshi doctor` walks the
production checklist against it: FAIL (exit 1) until each item is right, then "ready to enroll"."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from mdm.ground.health import mark_health
from mdm.roots.cli import main
from mdm.services.backup.schedule import HEALTH_NAME
from tests.core.test_serve import _free_port, _stop, _wait_for
from tests.support import pki

BIN = Path(sys.executable).parent


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIKESHI_")}
    env["HIKESHI_INSTANCE_PATH"] = str(tmp_path / "instance")
    env["HIKESHI_PUSH_ENABLED"] = "0"
    env.update(extra)
    return env


class _Ran:
    def __init__(self, result: Result) -> None:
        self.returncode = result.exit_code
        self.stdout = result.stdout
        self.stderr = result.stderr


def _hikeshi(env: dict[str, str], *args: str) -> _Ran:
    """The CLI in this process (a subprocess costs seconds of imports on a loaded machine)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        return _Ran(CliRunner().invoke(main, list(args), catch_exceptions=False))
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _findings(output: str) -> dict[str, str]:
    """{English label: mark} from doctor's text output."""
    found = {}
    for line in output.splitlines():
        if line.startswith("[") and " / " in line:
            mark, _, labels = line[1:].partition("] ")
            found[labels.split(" / ", 1)[1]] = mark.strip()
    return found


def test_bad_tls_files_are_refused_before_the_server_starts(tmp_path):
    ca, ca_key = pki.make_ca("Hikeshi test server CA")
    cert, _ = pki.make_server_cert(ca, ca_key)
    certfile = pki.write_pem(tmp_path / "server.pem", cert)
    other = pki.write_pem(tmp_path / "other-key.pem", pki.rsa_key("not the server's"))
    env = _env(tmp_path)
    assert _hikeshi(env, "db", "upgrade").returncode == 0
    mismatched = _hikeshi(env, "serve", "--certfile", str(certfile), "--keyfile", str(other))
    assert mismatched.returncode == 2 and "--certfile/--keyfile" in mismatched.stderr
    alone = _hikeshi(env, "serve", "--certfile", str(certfile))
    assert alone.returncode == 2 and "--certfile and --keyfile go together" in alone.stderr


def test_serve_over_tls_and_doctor_until_ready(tmp_path):
    ca, ca_key = pki.make_ca("Hikeshi test server CA")
    cert, key = pki.make_server_cert(ca, ca_key, ("localhost",), ("127.0.0.1",))
    certfile = pki.write_pem(tmp_path / "server.pem", cert, ca)
    keyfile = pki.write_pem(tmp_path / "server-key.pem", key)
    anchor = pki.write_pem(tmp_path / "private-ca.pem", ca)
    port = _free_port()
    public = f"https://localhost:{port}"
    env = _env(tmp_path, HIKESHI_PUBLIC_URL=public, HIKESHI_SCHEDULER_IN_SERVE="0")
    assert _hikeshi(env, "db", "upgrade").returncode == 0
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [str(BIN / "hikeshi"), "serve", "--port", str(port), "--threads", "2",
             "--certfile", str(certfile), "--keyfile", str(keyfile)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    trust = ssl.create_default_context(cafile=str(anchor))
    try:

        def answers() -> bool:
            try:
                return httpx.get(f"{public}/healthz", verify=trust, timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        _wait_for(answers, 60, "the TLS server")
        assert f"listening on https://127.0.0.1:{port}/" in log.read_text()
        with pytest.raises(httpx.TransportError):  # plain http on the TLS port gets no answer
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)

        # A private CA the doctor was not told about: HTTPS fails, and so does the command.
        first = _hikeshi(env, "doctor", "--timeout", "5")
        assert first.returncode == 1, first.stdout
        marks = _findings(first.stdout)
        assert marks["HTTPS"] == "FAIL" and "HIKESHI_SERVER_ANCHOR_FILE" in first.stdout
        assert marks["Push certificate"] == "FAIL" and marks["Administrator"] == "FAIL"
        assert marks["Public URL"] == "OK" and marks["Apple Business Manager token"] == "-"
        assert "プッシュ証明書" in first.stdout and "準備ができていません" in first.stderr

        # Each item put right, as the README's production checklist says.
        env["HIKESHI_SERVER_ANCHOR_FILE"] = str(anchor)
        env["HIKESHI_BACKUP_DIR"] = str(tmp_path / "backups")
        env["HIKESHI_BACKUP_KEY_FILE"] = str(tmp_path / "backup.key")
        assert _hikeshi(env, "user", "bootstrap").returncode == 0
        push_ca, push_ca_key = pki.make_ca("Apple push (test)")
        push, push_key = pki.issue_cert(
            push_ca, push_ca_key, "APSP:doctor", uid="com.apple.mgmt.External.doc"
        )
        assert (
            _hikeshi(
                env, "push-cert", "import", str(pki.write_pem(tmp_path / "push.pem", push, push_key))
            ).returncode
            == 0
        )
        engine = create_engine(f"sqlite:///{tmp_path / 'instance' / 'hikeshi.db'}")
        with Session(engine) as session:
            mark_health(session, HEALTH_NAME, True, "hikeshi-test.hkbackup")
            session.commit()
        engine.dispose()

        ready = _hikeshi(env, "doctor", "--timeout", "5")
        assert ready.returncode == 0, ready.stdout + ready.stderr
        marks = _findings(ready.stdout)
        assert marks["HTTPS"] == "OK" and marks["Push certificate"] == "OK" and marks["Backups"] == "OK"
        assert marks["Clock"] == "OK"  # against the Date header of the server's answer
        assert marks["Database"] == "WARN"  # SQLite: fine to try, PostgreSQL for production
        assert "ready to enroll" in ready.stdout and "端末を登録できる状態です" in ready.stdout
    finally:
        _stop(server)
