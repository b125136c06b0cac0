"""The CLI fails like a tool: one line saying what is wrong and what to do, a non-zero exit code,
nothing committed before a step that can fail (issue 15 item 11, issue 16 item 6). Real
processes, a real database, real certificates."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from mdm.ground import clock
from mdm.ground.models import EnrollmentToken, PushCertificate
from mdm.roots.cli import main
from tests.support import pki

BIN = Path(sys.executable).parent
MDM_TOPIC = "com.apple.mgmt.External.6e2b1c3a-hikeshi-cli"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hikeshi(env: dict[str, str], *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "hikeshi"), *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def _env(instance: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIKESHI_")}
    env.update(
        HIKESHI_INSTANCE_PATH=str(instance),
        HIKESHI_SECRET_KEY="cli-test-" + "k" * 32,
        HIKESHI_PUBLIC_URL="https://mdm.example.jp",
        **extra,
    )
    return env


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


@pytest.mark.parametrize(
    "args", [("db", "upgrade"), ("devices", "list"), ("audit", "verify"), ("user", "list"), ("serve",)]
)
def test_a_database_that_refuses_connections_is_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    url = f"postgresql+psycopg://hikeshi@127.0.0.1:{_free_port()}/hikeshi"
    line = _one_line_error(_hikeshi(_env(tmp_path / "instance", HIKESHI_DATABASE_URL=url), *args))
    assert "cannot use the database hikeshi on 127.0.0.1" in line
    assert "check that the database server is running and HIKESHI_DATABASE_URL points at it" in line


def test_a_database_hikeshi_does_not_run_on_is_one_line(tmp_path: Path) -> None:
    env = _env(tmp_path / "instance", HIKESHI_DATABASE_URL="mysql://hikeshi@127.0.0.1/hikeshi")
    line = _one_line_error(_hikeshi(env, "db", "upgrade"))
    assert "names a mysql database; Hikeshi runs on SQLite" in line


def test_a_database_that_does_not_exist_is_one_line(tmp_path: Path, database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip(
            "needs a PostgreSQL server (HIKESHI_TEST_DATABASE_URL); the refused-port case runs always"
        )
    missing = make_url(database_url).set(database="hikeshi_no_such_database")
    env = _env(tmp_path / "instance", HIKESHI_DATABASE_URL=missing.render_as_string(hide_password=False))
    line = _one_line_error(_hikeshi(env, "db", "upgrade"))
    assert 'database "hikeshi_no_such_database" does not exist' in line
    assert "create it (for PostgreSQL: createdb)" in line


@pytest.fixture
def cli(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HIKESHI_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HIKESHI_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("HIKESHI_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("HIKESHI_PUBLIC_URL", "https://mdm.example.jp")
    monkeypatch.setenv("HIKESHI_PUSH_ENABLED", "0")
    return lambda *args: CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_token_with_an_unwritable_qr_path_is_refused_before_the_token_exists(
    cli: Any, session: Any, tmp_path: Path
) -> None:
    assert cli("units", "create", "--kind", "hq", "--name-ja", "本部", "--code", "HQ").exit_code == 0
    result = cli("enroll", "token", "create", "--unit", "HQ", "--qr-png", "/nonexistent/dir/x.png")
    assert result.exit_code == 1
    assert (
        "cannot write the QR code to /nonexistent/dir/x.png: the folder /nonexistent/dir does not exist"
        in (result.output)
    )
    assert "Traceback" not in result.output
    assert session.scalar(select(func.count()).select_from(EnrollmentToken)) == 0
    # A writable path works, and the file is there.
    good = tmp_path / "qr.png"
    assert cli("enroll", "token", "create", "--unit", "HQ", "--qr-png", str(good)).exit_code == 0
    assert good.read_bytes().startswith(b"\x89PNG")
    session.rollback()  # a fresh read
    assert session.scalar(select(func.count()).select_from(EnrollmentToken)) == 1


def _push_file(tmp_path: Path, name: str, topic: str, *, days: int, not_before: Any = None) -> Path:
    apple_ca, apple_key = pki.make_ca("Apple Worldwide Developer Relations CA (test)")
    cert, key = pki.issue_cert(
        apple_ca,
        apple_key,
        f"APSP:{name}",
        key=pki.rsa_key(f"push:{name}"),
        days=days,
        not_before=not_before,
        uid=topic,
        extended_key_usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    path = tmp_path / f"{name}.pem"
    path.write_bytes(pki.pem(cert) + pki.key_pem(key))
    return path


def test_push_certificates_not_for_mdm_or_expired_are_refused_and_a_short_one_warns(
    cli: Any, session: Any, tmp_path: Path
) -> None:
    wrong = cli("push-cert", "import", str(_push_file(tmp_path, "app", "com.example.notapple", days=365)))
    assert wrong.exit_code == 1
    assert (
        "topic com.example.notapple is not an MDM push topic (those start with com.apple.mgmt.)"
        in wrong.output
    )
    expired = _push_file(tmp_path, "old", MDM_TOPIC, days=30, not_before=clock.now() - timedelta(days=40))
    refused = cli("push-cert", "import", str(expired))
    assert refused.exit_code == 1 and "the certificate expired on" in refused.output
    assert session.scalar(select(func.count()).select_from(PushCertificate)) == 0
    # The right certificate is accepted without --force (nothing wrong was stored before it),
    # with a warning: 9 days left.
    short = cli("push-cert", "import", str(_push_file(tmp_path, "short", MDM_TOPIC, days=9)))
    assert short.exit_code == 0, short.output
    assert f"imported push certificate: topic {MDM_TOPIC}" in short.output
    assert "WARNING: The APNs push certificate" in short.output and "days" in short.output


def test_read_only_commands_work_in_an_instance_folder_they_cannot_chmod(database_url: str) -> None:
    """The instance folder belongs to another user (as on a read-only mount): `audit verify` and
    `devices list` warn once and work. Run as `nobody` (setpriv), so chmod really fails."""
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to run the command as another user")
    shared = Path(tempfile.mkdtemp(prefix="hikeshi-ro-"))
    try:
        shared.chmod(0o755)
        instance = shared / "instance"
        instance.mkdir(mode=0o755)
        instance.chmod(0o755)  # not 0700: the command would like to fix it, and cannot
        url = database_url
        if url.startswith("sqlite"):
            data = shared / "data"
            data.mkdir(mode=0o777)
            data.chmod(0o777)
            url = f"sqlite:///{data / 'hikeshi.db'}"
            assert _hikeshi(_env(instance, HIKESHI_DATABASE_URL=url), "db", "upgrade").returncode == 0
            (data / "hikeshi.db").chmod(0o666)
        instance.chmod(0o755)  # (the upgrade above, as root, made it private)
        env = _env(instance, HIKESHI_DATABASE_URL=url)
        for args in (("audit", "verify"), ("devices", "list")):
            result = _hikeshi(env, *args, user="65534")
            assert result.returncode == 0, (args, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr
            assert f"cannot make {instance} private (mode 0700)" in result.stderr
        assert oct(instance.stat().st_mode & 0o777) == "0o755"
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_an_instance_folder_already_private_is_not_touched(tmp_path: Path, database_url: str) -> None:
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o700)
    before = instance.stat().st_ctime_ns
    result = _hikeshi(_env(instance, HIKESHI_DATABASE_URL=database_url), "audit", "verify")
    assert result.returncode == 0, result.stderr
    assert instance.stat().st_ctime_ns == before  # no chmod happened (it would change ctime)


def test_a_refused_restore_leaves_no_new_secret_in_the_target(tmp_path: Path) -> None:
    target = tmp_path / "site-b" / "instance"
    env = {k: v for k, v in _env(target).items() if k != "HIKESHI_SECRET_KEY"}
    env["HIKESHI_BACKUP_PASSPHRASE"] = "correct horse battery staple, off-site"
    forged = tmp_path / "hikeshi-backup.hkb"
    forged.write_bytes(b"HIKESHI-BACKUP but not really" + os.urandom(200))
    result = _hikeshi(env, "restore", str(forged))
    line = _one_line_error(result)
    assert line.startswith("Error: restore refused:")
    assert not (target / "secret_key").exists()
    assert not target.exists() or not any(target.iterdir())


def test_a_missing_apple_schema_folder_fails_in_ci_and_skips_elsewhere(tmp_path: Path) -> None:
    """Run the schema-checker tests with the folder pointed somewhere empty: on a user's machine
    they skip with the reason, in CI (CI=true or HIKESHI_REQUIRE_APPLE_SCHEMA=1) they fail."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "HIKESHI_REQUIRE_APPLE_SCHEMA")}
    env["HIKESHI_APPLE_SCHEMA_DIR"] = str(tmp_path)
    target = "tests/profiles/test_apple_schema_checker.py::test_conforming_payloads_have_no_problems"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", target]
    root = Path(__file__).resolve().parents[2]
    laptop = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert laptop.returncode == 0 and "skipped" in laptop.stdout, laptop.stdout[-2000:]
    for flag in ({"CI": "true"}, {"HIKESHI_REQUIRE_APPLE_SCHEMA": "1"}):
        ci = subprocess.run(
            command, env={**env, **flag}, cwd=root, capture_output=True, text=True, timeout=300
        )
        assert ci.returncode == 1 and ("failed" in ci.stdout or "error" in ci.stdout), ci.stdout[-2000:]
        assert "required here" in ci.stdout


def test_db_upgrade_on_an_empty_database_names_the_revisions(tmp_path: Path) -> None:
    env = _env(tmp_path / "instance")
    first = _hikeshi(env, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert "applied migration 0001: initial schema" in first.stdout
    assert first.stdout.strip().splitlines()[-1].startswith("database is up to date (")
    again = _hikeshi(env, "db", "upgrade")
    assert again.stdout.strip() == "database is up to date"


def test_devices_list_shows_asset_tag_and_user_and_udids_ignore_case(cli: Any, session: Any) -> None:
    from tests.support.factories import make_device

    device = make_device(session, udid="00008101-ABCDEF0123456789")
    session.commit()
    labelled = cli("devices", "label", str(device.id), "--asset-tag", "HK-0042", "--user", "中央救急1隊")
    assert labelled.exit_code == 0, labelled.output
    listed = cli("devices", "list")
    assert "HK-0042" in listed.output and "中央救急1隊" in listed.output
    record = next(line for line in cli("devices", "list", "--json").output.splitlines() if line)
    assert '"asset_tag": "HK-0042"' in record and '"user": "中央救急1隊"' in record
    sent = cli("command", "send", "00008101-abcdef0123456789", "DeviceInformation")
    assert sent.exit_code == 0, sent.output
    assert cli("command", "send", "00008101-nope", "DeviceInformation").exit_code == 1


def test_profile_export_writes_a_file_and_never_binary_to_a_terminal(
    cli: Any, session: Any, tmp_path: Path, settings: Any
) -> None:
    import pty

    assert cli("ca", "init").exit_code == 0
    created = cli("profile", "create", "--template", "field-standard", "--identifier", "jp.example.fd.out")
    assert created.exit_code == 0, created.output
    out = tmp_path / "base.mobileconfig"
    written = cli("profile", "export", "jp.example.fd.out", "--out", str(out))
    assert written.exit_code == 0, written.output
    assert out.read_bytes()[:1] == b"\x30"  # DER SignedData
    missing = cli("profile", "export", "jp.example.fd.out", "--out", str(tmp_path / "no" / "x.mobileconfig"))
    assert missing.exit_code == 1 and "does not exist" in missing.output
    # On a real terminal (a pty), stdout is refused with the hint; nothing binary is written.
    leader, follower = pty.openpty()
    env = {
        **os.environ,
        "HIKESHI_DATABASE_URL": settings.database_url,
        "HIKESHI_INSTANCE_PATH": str(settings.instance_path),
        "HIKESHI_SECRET_KEY": settings.secret_key,
        "HIKESHI_PUBLIC_URL": "https://mdm.example.jp",
    }
    try:
        result = subprocess.run(
            [str(BIN / "hikeshi"), "profile", "export", "jp.example.fd.out"],
            env=env,
            stdout=follower,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
        os.close(follower)
        follower = -1
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert result.returncode == 1 and "give --out FILE" in result.stderr
    assert b"\x30\x82" not in shown
