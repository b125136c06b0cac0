"""Scheduled backups with generations, run as the scheduler runs them (SQLite, or PostgreSQL in CI)."""

from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from mdm.ground.config import Settings
from mdm.ground.health import service_health
from mdm.ground.models import Alert, JobRun
from mdm.roots.scheduler.jobs import JobContext, run_job
from mdm.services.backup.archive import read_backup
from mdm.services.backup.crypto import BackupKey
from mdm.services.backup.schedule import backup_status, list_generations
from tests.support.factories import make_device
from tests.support.tools import require_tool


@pytest.fixture
def backup_settings(settings: Settings, session, tmp_path: Path) -> Settings:
    if settings.database_url.startswith("postgresql"):
        require_tool("pg_dump", "postgresql-client")
    make_device(session, serial="SCHED0001")
    session.commit()
    keys = tmp_path / "keys"
    keys.mkdir()
    key_file = keys / "backup.key"
    key_file.write_bytes(secrets.token_bytes(48))
    return replace(
        settings,
        backup_directory=tmp_path / "offsite",
        backup_key_file=key_file,
        backup_generations=3,
        backup_interval_minutes=60,
    )


def _run(session_factory, settings: Settings) -> JobRun:
    return run_job(JobContext(session_factory, settings, "scheduler:1"), "scheduled_backup")


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_job_is_off_without_a_backup_directory(session_factory, settings):
    run = _run(session_factory, settings)
    assert (run.outcome, run.details) == ("ok", {"enabled": False})


def test_backs_up_when_due_and_keeps_n_generations(session, session_factory, backup_settings, frozen_clock):
    directory = backup_settings.backup_directory
    assert directory is not None
    first = _run(session_factory, backup_settings)
    assert first.outcome == "ok" and first.details["due"] is True
    generations = list_generations(directory)
    assert [g.path.name for g in generations] == [first.details["backup"]]
    # A verified, complete generation: decrypts with the key file and holds the database.
    key = BackupKey.from_options(None, backup_settings.backup_key_file)
    manifest, members = read_backup(generations[0].path, key)
    assert manifest["database"] in ("sqlite", "postgresql")
    assert any(name.startswith("database.") for name in members)
    assert not [p for p in directory.iterdir() if p.name.startswith(".incoming-")]

    frozen_clock.advance(minutes=30)
    not_due = _run(session_factory, backup_settings)
    assert not_due.details["due"] is False and len(list_generations(directory)) == 1

    made = [first.details["backup"]]
    for _ in range(4):
        frozen_clock.advance(minutes=61)
        run = _run(session_factory, backup_settings)
        assert run.outcome == "ok", run.details
        made.append(run.details["backup"])
    kept = [g.path.name for g in list_generations(directory)]
    assert kept == made[-3:]  # the newest three, oldest pruned with their sidecars
    assert len(list(directory.glob("*.json"))) == 3

    session.rollback()
    session.expire_all()
    status = backup_status(session, backup_settings)
    assert status["ok"] is True and status["last_outcome"] == "ok"
    assert status["last_backup"] == made[-1]
    assert status["last_success_at"] == frozen_clock.current.isoformat()


def test_key_file_inside_the_backup_directory_is_refused(session, session_factory, backup_settings):
    directory = backup_settings.backup_directory
    assert directory is not None
    directory.mkdir()
    key_inside = directory / "backup.key"
    key_inside.write_bytes(secrets.token_bytes(48))
    run = _run(session_factory, replace(backup_settings, backup_key_file=key_inside))
    assert run.outcome == "failed"
    assert "key file" in run.details["error"] and "inside the backup directory" in run.details["error"]
    assert _names(directory) == ["backup.key"]  # nothing written
    again = _run(session_factory, replace(backup_settings, backup_key_file=key_inside))
    assert again.outcome == "failed"
    session.rollback()
    session.expire_all()
    health = service_health(session, "backup")
    assert health is not None and health.healthy is False
    status = backup_status(session, backup_settings)
    assert status["ok"] is False and status["last_outcome"] == "failed"
    assert "inside the backup directory" in status["error"]
    # Administrators are told once (alert e-mail and webhooks), not at every attempt.
    alerts = session.scalars(select(Alert).where(Alert.kind == "backup.failed")).all()
    assert len(alerts) == 1 and alerts[0].severity == "critical"
    assert "inside the backup directory" in alerts[0].title


def test_backup_directory_inside_the_instance_is_refused(session_factory, backup_settings):
    inside = backup_settings.instance_path / "backups"
    run = _run(session_factory, replace(backup_settings, backup_directory=inside))
    assert run.outcome == "failed" and "inside the instance folder" in run.details["error"]
    assert not inside.exists()


def test_missing_key_file_fails_clearly(session_factory, backup_settings, tmp_path):
    run = _run(session_factory, replace(backup_settings, backup_key_file=tmp_path / "nowhere.key"))
    assert run.outcome == "failed" and "cannot read the backup key file" in run.details["error"]


def test_a_failed_backup_deletes_nothing(session, session_factory, backup_settings, frozen_clock, tmp_path):
    directory = backup_settings.backup_directory
    assert directory is not None
    one_kept = replace(backup_settings, backup_generations=1)
    good = _run(session_factory, one_kept)
    assert good.outcome == "ok"
    # An interrupted copy (no sidecar) is not a generation: never counted, never deleted.
    stray = directory / "hikeshi-backup-20000101T000000000000Z.hkbackup"
    stray.write_bytes(b"partial")
    before = _names(directory)

    frozen_clock.advance(hours=2)
    broken = replace(one_kept, database_url=f"sqlite:///{tmp_path / 'gone' / 'missing.db'}")
    failed = _run(session_factory, broken)
    assert failed.outcome == "failed" and "no Hikeshi schema" in failed.details["error"]
    assert _names(directory) == before  # the older backup survives a failure, nothing staged remains
    session.rollback()
    session.expire_all()
    status = backup_status(session, backup_settings)
    assert status["ok"] is False and status["last_outcome"] == "failed"
    assert status["last_backup"] == good.details["backup"]  # the last good one is still named
    assert status["failing_since"] == frozen_clock.current.isoformat()

    frozen_clock.advance(minutes=5)
    recovered = _run(session_factory, one_kept)
    assert recovered.outcome == "ok"
    assert [g.path.name for g in list_generations(directory)] == [recovered.details["backup"]]
    assert stray.exists()
    session.rollback()
    session.expire_all()
    assert backup_status(session, backup_settings)["ok"] is True


def test_status_reports_an_overdue_backup(session, session_factory, backup_settings, frozen_clock):
    assert backup_status(session, backup_settings)["ok"] is False  # enabled, never ran
    assert _run(session_factory, backup_settings).outcome == "ok"
    session.rollback()
    session.expire_all()
    assert backup_status(session, backup_settings)["overdue"] is False
    frozen_clock.advance(hours=3)  # two intervals without a backup: the scheduler is not running it
    status = backup_status(session, backup_settings)
    assert status["overdue"] is True and status["ok"] is False


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HIKESHI_INSTANCE_PATH", str(tmp_path / "inst"))
    monkeypatch.setenv("HIKESHI_BACKUP_DIR", str(tmp_path / "share"))
    monkeypatch.setenv("HIKESHI_BACKUP_KEY_FILE", str(tmp_path / "k.key"))
    monkeypatch.setenv("HIKESHI_BACKUP_GENERATIONS", "7")
    monkeypatch.setenv("HIKESHI_BACKUP_INTERVAL_MINUTES", "30")
    for name in ("HIKESHI_SECRET_KEY", "HIKESHI_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    s = Settings.from_env()
    assert s.backup_directory == (tmp_path / "share").resolve()
    assert s.backup_key_file == (tmp_path / "k.key").resolve()
    assert (s.backup_generations, s.backup_interval_minutes) == (7, 30)
