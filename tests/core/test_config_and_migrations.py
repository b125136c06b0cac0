from __future__ import annotations

import stat
import tempfile
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mdm import create_app
from mdm.ground.config import Settings
from mdm.ground.db import DatabaseBehind, make_engine, upgrade_database
from mdm.ground.models import Base
from mdm.ground.secretbox import SecretBoxError, seal, unseal


def test_secrets_are_generated_once_with_mode_0600(tmp_path, monkeypatch):
    monkeypatch.setenv("HIKESHI_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("HIKESHI_SECRET_KEY", raising=False)
    monkeypatch.delenv("HIKESHI_DATABASE_URL", raising=False)
    first = Settings.from_env()
    secret_file = tmp_path / "instance" / "secret_key"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "instance").stat().st_mode) == 0o700
    assert Settings.from_env().secret_key == first.secret_key
    assert first.database_url == f"sqlite:///{tmp_path / 'instance' / 'hikeshi.db'}"


def test_bad_number_in_environment_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("HIKESHI_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("HIKESHI_MAX_DEVICE_BODY", "lots")
    with pytest.raises(ValueError, match="HIKESHI_MAX_DEVICE_BODY"):
        Settings.from_env()


def test_secret_box_round_trip_and_purpose_separation():
    sealed = seal("k1", "apns-push-key", b"private key")
    assert b"private key" not in sealed
    assert unseal("k1", "apns-push-key", sealed) == b"private key"
    with pytest.raises(SecretBoxError):
        unseal("k2", "apns-push-key", sealed)
    with pytest.raises(SecretBoxError):
        unseal("k1", "unlock-token", sealed)


def test_migrations_match_the_models(engine):
    """Autogenerate against the migrated database finds nothing to do."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_server_refuses_a_database_behind_its_migrations(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    make_engine(url).dispose()
    settings = Settings(instance_path=tmp_path, database_url=url, secret_key="s")
    with pytest.raises(DatabaseBehind, match="hikeshi db upgrade"):
        create_app(settings)
    upgrade_database(url)
    assert create_app(settings).extensions["hikeshi"].settings is settings


def test_sqlite_file_lands_in_the_instance_folder():
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'sub' / 'x.db'}"
        upgrade_database(url)
        assert (Path(tmp) / "sub" / "x.db").exists()
