"""Scheduled backups: a consistent online backup every `backup_interval_minutes` into
`backup_directory` (meant to be off-site, e.g. a mounted share), keeping `backup_generations`.

Rules that protect a recovery:
- the key file is never stored beside the backups (a job with the key inside the backup directory
  refuses to run), and the backup directory never lies inside the instance folder (every backup
  would otherwise carry the previous ones);
- a backup is written to a staging folder, decrypted and checked again with the same key, and only
  then moved into place: a generation in the directory is always a complete, verified one;
- only after a verified backup are older generations pruned, and the one just made is never
  pruned: a failed backup never deletes anything.

The outcome is recorded as the "backup" ServiceHealth row (since-when a failure began) and in the
JobRun of each attempt; `backup_status` reads them for /readyz and the console.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground import clock
from mdm.ground.config import Settings
from mdm.ground.db import transaction
from mdm.ground.health import mark_health, service_health
from mdm.ground.models import JobRun, Severity
from mdm.services.alerts.service import raise_alert
from mdm.services.backup.archive import SUFFIX, BackupError, create_backup, read_backup
from mdm.services.backup.crypto import BackupKey, BackupKeyError

log = logging.getLogger(__name__)

JOB_NAME = "scheduled_backup"
HEALTH_NAME = "backup"


class _JobContext(Protocol):
    """What the scheduler hands a job (mdm.roots.scheduler.jobs.JobContext, which sits above us)."""

    @property
    def factory(self) -> sessionmaker[Session]: ...

    @property
    def settings(self) -> Settings: ...


@dataclass(frozen=True)
class Generation:
    path: Path
    sidecar: Path
    created_at: datetime
    size: int


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def checked_configuration(settings: Settings) -> tuple[Path, BackupKey]:
    """The backup directory and key, or BackupError saying which setting is wrong and why."""
    directory, key_file = settings.backup_directory, settings.backup_key_file
    if directory is None:
        raise BackupError("scheduled backups are off: HIKESHI_BACKUP_DIR is not set")
    if key_file is None:
        raise BackupError("HIKESHI_BACKUP_KEY_FILE is not set: scheduled backups need a key file")
    if _inside(key_file, directory):
        raise BackupError(
            f"refusing to back up: the key file {key_file} is inside the backup directory {directory}; "
            "a key stored beside the backups protects nothing. Keep it elsewhere"
        )
    if _inside(directory, settings.instance_path):
        raise BackupError(
            f"refusing to back up: the backup directory {directory} is inside the instance folder "
            f"{settings.instance_path}; each backup would contain the previous ones"
        )
    if settings.backup_generations < 1:
        raise BackupError("HIKESHI_BACKUP_GENERATIONS must be at least 1")
    if settings.backup_interval_minutes < 1:
        raise BackupError("HIKESHI_BACKUP_INTERVAL_MINUTES must be at least 1")
    try:
        key = BackupKey.from_options(None, key_file)
    except OSError as exc:
        raise BackupError(f"cannot read the backup key file {key_file}: {exc.strerror}") from exc
    except BackupKeyError as exc:
        raise BackupError(str(exc)) from exc
    return directory, key


def list_generations(directory: Path) -> list[Generation]:
    """Complete backups in the directory, oldest first. A file without a readable sidecar of the
    same size is not a generation (an interrupted copy, or something else): it is left alone."""
    generations: list[Generation] = []
    if not directory.is_dir():
        return generations
    for path in directory.glob(f"hikeshi-backup-*{SUFFIX}"):
        sidecar = path.with_suffix(".json")
        try:
            meta = json.loads(sidecar.read_text())
            created = datetime.fromisoformat(meta["created_at"])
            size = int(meta["size"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if path.stat().st_size != size:
            continue
        generations.append(Generation(path, sidecar, created, size))
    return sorted(generations, key=lambda g: (g.created_at, g.path.name))


def prune_generations(directory: Path, keep: int, *, protect: Path) -> list[Path]:
    """Keep the newest `keep` generations, and always `protect` (the backup just verified)."""
    if keep < 1:
        raise BackupError("at least one generation must be kept")
    generations = list_generations(directory)
    kept = {g.path for g in generations[-keep:]} | {protect}
    removed: list[Path] = []
    for generation in generations:
        if generation.path in kept:
            continue
        generation.path.unlink(missing_ok=True)
        generation.sidecar.unlink(missing_ok=True)
        removed.append(generation.path)
    return removed


def take_verified_backup(settings: Settings, directory: Path, key: BackupKey) -> Generation:
    """One backup, staged, re-read with the key, then moved into the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=directory))
    try:
        result = create_backup(settings, staging, key)
        manifest, _members = read_backup(result.path, key)  # decrypts, checks every member
        if not manifest.get("alembic_revisions"):
            # An empty database (a wrong URL, a fresh server) must never become the generation
            # that pushes the real backups out.
            raise BackupError(
                "refusing to keep this backup: the database holds no Hikeshi schema "
                "(no migrations applied); check HIKESHI_DATABASE_URL"
            )
        final = directory / result.path.name
        # Backup first, sidecar last: a file only counts as a generation once both are in place.
        os.replace(result.path, final)
        os.replace(result.sidecar, final.with_suffix(".json"))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    generation = next((g for g in list_generations(directory) if g.path == final), None)
    if generation is None:
        raise BackupError(f"{final.name} was written but cannot be read back from {directory}")
    return generation


def scheduled_backup(ctx: _JobContext) -> dict[str, Any]:
    """The scheduler job: back up when the newest generation is older than the interval."""
    settings = ctx.settings
    if settings.backup_directory is None:
        return {"enabled": False}
    try:
        directory, key = checked_configuration(settings)
        existing = list_generations(directory)
        now = clock.now()
        interval = timedelta(minutes=settings.backup_interval_minutes)
        if existing and now - existing[-1].created_at < interval:
            return {
                "due": False,
                "newest": existing[-1].path.name,
                "next_due": (existing[-1].created_at + interval).isoformat(),
            }
        generation = take_verified_backup(settings, directory, key)
        pruned = prune_generations(directory, settings.backup_generations, protect=generation.path)
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, BackupError) else str(exc)
        log.error("scheduled backup failed; older backups were kept: %s", message)
        with transaction(ctx.factory) as session:
            previous = service_health(session, HEALTH_NAME)
            already_failing = previous is not None and not previous.healthy
            mark_health(session, HEALTH_NAME, False, message[:255])
            if not already_failing:
                # One alert (e-mail, webhooks) when backups start failing, not one per attempt.
                raise_alert(
                    session,
                    "backup.failed",
                    Severity.CRITICAL,
                    f"Scheduled backup failed: {message}",
                    details={"error": message, "directory": str(settings.backup_directory)},
                )
        raise
    with transaction(ctx.factory) as session:
        mark_health(session, HEALTH_NAME, True, generation.path.name)
    log.info("scheduled backup %s written; pruned %d", generation.path.name, len(pruned))
    return {
        "due": True,
        "backup": generation.path.name,
        "created_at": generation.created_at.isoformat(),
        "size": generation.size,
        "pruned": [p.name for p in pruned],
    }


def _last_successful_run(session: Session) -> JobRun | None:
    runs = session.scalars(
        select(JobRun)
        .where(JobRun.job == JOB_NAME, JobRun.outcome == "ok")
        .order_by(JobRun.started_at.desc(), JobRun.id.desc())
        .limit(500)
    )
    return next((run for run in runs if run.details.get("backup")), None)


def backup_status(session: Session, settings: Settings) -> dict[str, Any]:
    """Last backup time and outcome, from the database only (a web node may not mount the share).

    `ok` is False when the last attempt failed or the newest good backup is older than two
    intervals; it is information for operators, not a reason to take a node out of service."""
    if settings.backup_directory is None:
        return {"ok": True, "enabled": False}
    row = service_health(session, HEALTH_NAME)
    last_success: datetime | None = None
    last_backup: str | None = None
    if row is not None and row.healthy:
        last_success, last_backup = row.updated_at, row.detail
    else:
        run = _last_successful_run(session)
        if run is not None:
            last_success, last_backup = run.finished_at or run.started_at, str(run.details["backup"])
    interval = timedelta(minutes=settings.backup_interval_minutes)
    overdue = last_success is None or clock.now() - last_success > 2 * interval
    failing = row is not None and not row.healthy
    status: dict[str, Any] = {
        "ok": not failing and not overdue,
        "enabled": True,
        "directory": str(settings.backup_directory),
        "generations": settings.backup_generations,
        "interval_minutes": settings.backup_interval_minutes,
        "last_attempt_at": row.updated_at.isoformat() if row else None,
        "last_outcome": None if row is None else ("ok" if row.healthy else "failed"),
        "last_success_at": last_success.isoformat() if last_success else None,
        "last_backup": last_backup,
        "overdue": overdue,
    }
    if failing and row is not None:
        status["failing_since"] = row.since.isoformat()
        status["error"] = row.detail
    return status
