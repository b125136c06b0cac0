"""`hikeshi backup` and `hikeshi restore`.

A backup is one encrypted file holding a tar of: the database (SQLite's online backup API, or
`pg_dump --format=custom`), the instance secrets, and a manifest with a SHA-256 per member.
Beside it a small JSON sidecar gives the file's own checksum and time, without any secret, so
an operator can check copies kept elsewhere without the key.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from mdm.ground import clock
from mdm.ground.config import Settings
from mdm.ground.db import make_engine, migration_state
from mdm.services.backup.crypto import BackupKey, BackupKeyError, decrypt_archive, encrypt_archive

FORMAT = 1
SUFFIX = ".hkbackup"
# Tables whose rows make an instance "in use": restore refuses to overwrite them.
_IN_USE_TABLES = ("devices", "commands", "audit_events")


class BackupError(RuntimeError):
    """A backup or restore could not be done; the message says why and what to do."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    sidecar: Path
    sha256: str
    size: int
    pruned: list[Path]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _database_kind(url: str) -> str:
    backend = make_url(url).get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise BackupError(f"backups support SQLite and PostgreSQL, not {backend}")
    return backend


def _libpq_url(url: str) -> str:
    # The password travels in PGPASSWORD (see _libpq_env), never on a command line `ps` shows.
    return make_url(url).set(drivername="postgresql", password=None).render_as_string(hide_password=False)


def _libpq_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    password = make_url(url).password
    if password:
        env["PGPASSWORD"] = str(password)
    return env


def _dump_database(settings: Settings) -> tuple[str, bytes]:
    kind = _database_kind(settings.database_url)
    if kind == "sqlite":
        source_path = make_url(settings.database_url).database
        if not source_path or not Path(source_path).exists():
            raise BackupError(f"no SQLite database at {source_path}")
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / "snapshot.db"
            # The online backup API copies a consistent snapshot while the server keeps running.
            with sqlite3.connect(source_path) as src, sqlite3.connect(target) as dst:
                src.backup(dst)
            return "database.sqlite", target.read_bytes()
    dump = subprocess.run(
        [
            "pg_dump",
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            f"--dbname={_libpq_url(settings.database_url)}",
        ],
        capture_output=True,
        check=False,
        env=_libpq_env(settings.database_url),
    )
    if dump.returncode != 0:
        raise BackupError(f"pg_dump failed: {dump.stderr.decode(errors='replace').strip()}")
    return "database.pgdump", dump.stdout


def _instance_files(settings: Settings) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    db_path = (
        make_url(settings.database_url).database
        if _database_kind(settings.database_url) == "sqlite"
        else None
    )
    skip = {Path(db_path).resolve()} if db_path else set()
    for path in sorted(settings.instance_path.rglob("*")):
        if not path.is_file() or path.resolve() in skip:
            continue
        if db_path and path.name.startswith(Path(db_path).name):  # -wal, -shm, -journal
            continue
        files[f"instance/{path.relative_to(settings.instance_path)}"] = path.read_bytes()
    # The effective secret may come from the environment; without it the sealed CA and APNs keys
    # in the database could not be opened after a restore.
    files["instance/secret_key"] = (settings.secret_key + "\n").encode()
    return files


def create_backup(
    settings: Settings, directory: Path, key: BackupKey, *, keep: int | None = None
) -> BackupResult:
    directory.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    try:
        current, _heads = migration_state(engine)
    finally:
        engine.dispose()
    db_name, db_bytes = _dump_database(settings)
    members = {db_name: db_bytes, **_instance_files(settings)}
    created = clock.now()
    manifest = {
        "format": FORMAT,
        "created_at": created.isoformat(),
        "database": _database_kind(settings.database_url),
        "alembic_revisions": sorted(current),
        "files": {name: {"sha256": _sha256(data), "size": len(data)} for name, data in members.items()},
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in [("manifest.json", json.dumps(manifest, indent=2).encode()), *members.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600
            info.mtime = int(created.timestamp())
            tar.addfile(info, io.BytesIO(data))
    encrypted = encrypt_archive(buffer.getvalue(), key)
    stem = f"hikeshi-backup-{created:%Y%m%dT%H%M%S%fZ}"
    path = directory / f"{stem}{SUFFIX}"
    _write_private(path, encrypted)
    digest = _sha256(encrypted)
    sidecar = directory / f"{stem}.json"
    sidecar.write_text(
        json.dumps(
            {
                "file": path.name,
                "sha256": digest,
                "size": len(encrypted),
                "created_at": created.isoformat(),
                "database": manifest["database"],
                "format": FORMAT,
            },
            indent=2,
        )
    )
    pruned = prune_generations(directory, keep) if keep else []
    return BackupResult(path, sidecar, digest, len(encrypted), pruned)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def prune_generations(directory: Path, keep: int) -> list[Path]:
    """Keep the newest `keep` backups in the directory; remove older ones and their sidecars."""
    backups = sorted(directory.glob(f"hikeshi-backup-*{SUFFIX}"))
    removed: list[Path] = []
    for old in backups[: max(0, len(backups) - keep)]:
        old.unlink()
        old.with_suffix(".json").unlink(missing_ok=True)
        removed.append(old)
    return removed


def copy_offsite(result: BackupResult, directory: Path, keep: int | None = None) -> Path:
    """Copy a finished backup and its sidecar to a second place (meant to be off-site)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / result.path.name
    shutil.copy2(result.path, target)
    shutil.copy2(result.sidecar, directory / result.sidecar.name)
    if keep:
        prune_generations(directory, keep)
    return target


def read_backup(path: Path, key: BackupKey) -> tuple[dict[str, object], dict[str, bytes]]:
    """Decrypt and check a backup; (manifest, members). Raises BackupError naming the problem."""
    data = path.read_bytes()
    sidecar = path.with_suffix(".json")
    if sidecar.exists():
        expected = json.loads(sidecar.read_text()).get("sha256")
        if expected and expected != _sha256(data):
            raise BackupError(
                f"{path.name} does not match the checksum in {sidecar.name}: the file was altered"
            )
    try:
        plaintext = decrypt_archive(data, key)
    except BackupKeyError as exc:
        raise BackupError(str(exc)) from exc
    members: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(plaintext), mode="r") as tar:
        for info in tar.getmembers():
            if not info.isfile() or info.name.startswith("/") or ".." in Path(info.name).parts:
                raise BackupError(f"unexpected member {info.name!r} in backup")
            extracted = tar.extractfile(info)
            members[info.name] = extracted.read() if extracted else b""
    manifest = json.loads(members.pop("manifest.json"))
    files = manifest.get("files", {})
    if set(files) != set(members):
        raise BackupError("backup members do not match its manifest")
    for name, meta in files.items():
        if _sha256(members[name]) != meta["sha256"]:
            raise BackupError(f"{name} in the backup does not match its manifest checksum")
    return manifest, members


def _ensure_empty(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            for table in _IN_USE_TABLES:
                if table in tables and conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar():  # noqa: S608
                    raise BackupError(
                        f"the target database already holds {table}: restore only onto an empty instance"
                    )
    finally:
        engine.dispose()


def restore_backup(settings: Settings, path: Path, key: BackupKey) -> dict[str, object]:
    """Restore a backup onto an empty instance: database, then instance secrets."""
    manifest, members = read_backup(path, key)
    kind = _database_kind(settings.database_url)
    if manifest["database"] != kind:
        raise BackupError(f"this backup holds a {manifest['database']} database; the target is {kind}")
    _ensure_empty(settings)
    if kind == "sqlite":
        target = make_url(settings.database_url).database
        assert target is not None
        with tempfile.TemporaryDirectory() as tmp:
            snapshot = Path(tmp) / "snapshot.db"
            snapshot.write_bytes(members["database.sqlite"])
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(snapshot) as src, sqlite3.connect(target) as dst:
                src.backup(dst)
    else:
        restore = subprocess.run(
            [
                "pg_restore",
                "--no-owner",
                "--no-privileges",
                "--clean",
                "--if-exists",
                "--exit-on-error",
                f"--dbname={_libpq_url(settings.database_url)}",
            ],
            input=members["database.pgdump"],
            capture_output=True,
            check=False,
            env=_libpq_env(settings.database_url),
        )
        if restore.returncode != 0:
            raise BackupError(f"pg_restore failed: {restore.stderr.decode(errors='replace').strip()}")
    settings.instance_path.mkdir(parents=True, exist_ok=True)
    for name, data in members.items():
        if not name.startswith("instance/"):
            continue
        _write_private(settings.instance_path / name.removeprefix("instance/"), data)
    return manifest
