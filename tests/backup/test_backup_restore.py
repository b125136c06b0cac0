"""Backup and restore round trip on the suite's database (SQLite, or PostgreSQL in CI)."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from commands.queue import enqueue_command
from mdm.ground.audit import SYSTEM, Actor, verify_chain
from mdm.ground.config import Settings
from mdm.ground.db import make_engine, make_session_factory, upgrade_database
from mdm.ground.models import Command, Device, PushCertificate
from mdm.ground.push.certificates import decrypt_key, import_push_certificate, read_push_certificate
from mdm.services.backup.archive import (
    BackupError,
    create_backup,
    prune_generations,
    read_backup,
    restore_backup,
)
from mdm.services.backup.crypto import BackupKey
from tests.conftest import _drop_postgres_database, _fresh_postgres_database
from tests.support import pki
from tests.support.factories import make_device
from tests.support.tools import require_tool

PASSPHRASE = BackupKey(passphrase="正しい馬 battery staple 2026")
ADMIN = Actor("admin@hq", "admin", "127.0.0.1")


@pytest.fixture
def populated(settings: Settings, session) -> Settings:
    if settings.database_url.startswith("postgresql"):
        require_tool("pg_dump", "postgresql-client")
    for n in range(3):
        device = make_device(session, serial=f"SERIAL{n:04d}")
        enqueue_command(session, device, "DeviceLock", {"Message": f"紛失 {n}"}, actor=ADMIN)
    ca, ca_key = pki.make_ca("Apple Push CA (backup test)")
    cert, key = pki.issue_cert(ca, ca_key, "APSP:b", uid="com.apple.mgmt.External.backup")
    import_push_certificate(
        session,
        read_push_certificate(pki.pem(cert) + pki.key_pem(key)),
        secret_key=settings.secret_key,
        actor=SYSTEM,
    )
    session.commit()
    (settings.instance_path / "notes.txt").write_text("instance file")
    return settings


@pytest.fixture
def empty_target(populated: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A second, empty instance of the same kind, with its own database and secret."""
    instance = tmp_path / "restored-instance"
    if populated.database_url.startswith("postgresql"):
        import os

        base = os.environ["HIKESHI_TEST_DATABASE_URL"]
        url, name = _fresh_postgres_database(base)
        yield Settings(instance_path=instance, database_url=url, secret_key="another-secret")
        _drop_postgres_database(base, name)
        return
    yield Settings(
        instance_path=instance, database_url=f"sqlite:///{tmp_path / 'restored.db'}", secret_key="x"
    )


def _snapshot(settings: Settings, secret: str) -> dict[str, object]:
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as s:
            cert = s.scalars(select(PushCertificate)).one()
            return {
                "devices": [
                    (d.udid, d.serial_number, d.push_token)
                    for d in s.scalars(select(Device).order_by(Device.id))
                ],
                "commands": [
                    (c.uuid, c.status, c.params) for c in s.scalars(select(Command).order_by(Command.id))
                ],
                "chain": verify_chain(s),
                "push_key": decrypt_key(cert, secret),
            }
    finally:
        engine.dispose()


def test_round_trip_restores_devices_commands_audit_and_secrets(populated, empty_target, tmp_path):
    result = create_backup(populated, tmp_path / "backups", PASSPHRASE)
    assert result.path.stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" not in result.path.read_bytes() and b"SERIAL0000" not in result.path.read_bytes()
    before = _snapshot(populated, populated.secret_key)
    restore_backup(empty_target, result.path, PASSPHRASE)
    restored_secret = (empty_target.instance_path / "secret_key").read_text().strip()
    assert restored_secret == populated.secret_key
    assert (empty_target.instance_path / "notes.txt").read_text() == "instance file"
    after = _snapshot(empty_target, restored_secret)
    assert after == before
    assert after["chain"].ok and after["chain"].checked == 4  # three queued locks and the certificate import


def test_flipped_byte_is_refused(populated, tmp_path):
    result = create_backup(populated, tmp_path / "b", PASSPHRASE)
    data = bytearray(result.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    result.path.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="altered"):
        read_backup(result.path, PASSPHRASE)
    result.sidecar.unlink()  # without the sidecar, the AES-GCM tag still catches it
    with pytest.raises(BackupError, match="wrong, or the file was altered"):
        read_backup(result.path, PASSPHRASE)


def test_wrong_key_is_refused(populated, tmp_path):
    result = create_backup(populated, tmp_path / "b", PASSPHRASE)
    with pytest.raises(BackupError, match="key or passphrase is wrong"):
        read_backup(result.path, BackupKey(passphrase="not the right passphrase"))
    key_file = tmp_path / "backup.key"
    key_file.write_bytes(secrets.token_bytes(32))
    with pytest.raises(BackupError, match="passphrase, not a key file"):
        read_backup(result.path, BackupKey(key_file_bytes=key_file.read_bytes()))


def test_key_file_backups_and_generations(populated, tmp_path):
    key = BackupKey(key_file_bytes=secrets.token_bytes(32))
    directory = tmp_path / "gen"
    paths = [create_backup(populated, directory, key).path for _ in range(4)]
    assert prune_generations(directory, 2) == paths[:2]
    assert sorted(directory.glob("*.hkbackup")) == paths[2:]
    assert sorted(p.name for p in directory.glob("*.json")) == sorted(
        p.with_suffix(".json").name for p in paths[2:]
    )
    manifest, members = read_backup(paths[-1], key)
    assert "instance/secret_key" in members and manifest["format"] == 1


def test_restore_refuses_an_instance_in_use(populated, tmp_path):
    result = create_backup(populated, tmp_path / "b", PASSPHRASE)
    with pytest.raises(BackupError, match="empty instance"):
        restore_backup(populated, result.path, PASSPHRASE)


def test_cli_backup_and_restore(populated, empty_target, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from mdm.roots.cli import main

    monkeypatch.setenv("HIKESHI_BACKUP_PASSPHRASE", "long enough passphrase")
    for key, value in {
        "HIKESHI_DATABASE_URL": populated.database_url,
        "HIKESHI_INSTANCE_PATH": str(populated.instance_path),
        "HIKESHI_SECRET_KEY": populated.secret_key,
    }.items():
        monkeypatch.setenv(key, value)
    out = CliRunner().invoke(
        main, ["backup", "--to", str(tmp_path / "b1"), "--keep", "2", "--copy-to", str(tmp_path / "off")]
    )
    assert out.exit_code == 0, out.output
    [copy] = list((tmp_path / "off").glob("*.hkbackup"))
    monkeypatch.setenv("HIKESHI_DATABASE_URL", empty_target.database_url)
    monkeypatch.setenv("HIKESHI_INSTANCE_PATH", str(empty_target.instance_path))
    monkeypatch.delenv("HIKESHI_SECRET_KEY")
    if not empty_target.database_url.startswith("postgresql"):
        upgrade_database(empty_target.database_url)  # an empty, migrated instance is "empty" too
    monkeypatch.setenv("HIKESHI_BACKUP_PASSPHRASE", "a wrong passphrase!!")
    refused = CliRunner().invoke(main, ["restore", str(copy)])
    assert refused.exit_code != 0 and "restore refused" in refused.output
    monkeypatch.setenv("HIKESHI_BACKUP_PASSPHRASE", "long enough passphrase")
    done = CliRunner().invoke(main, ["restore", str(copy)])
    assert done.exit_code == 0, done.output
    assert _snapshot(replace(empty_target), populated.secret_key)["devices"]


def test_passphrase_rules():
    from mdm.services.backup.crypto import BackupKeyError

    with pytest.raises(BackupKeyError):
        BackupKey.from_options("short", None)
    with pytest.raises(BackupKeyError):
        BackupKey.from_options(None, None)
    with tempfile.NamedTemporaryFile() as fh:
        fh.write(b"x" * 8)
        fh.flush()
        with pytest.raises(BackupKeyError, match="32 bytes"):
            BackupKey.from_options(None, Path(fh.name))
