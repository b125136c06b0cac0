"""Disk full, read-only disk, read-only database: /readyz says "not ready" (503) and names the
failing part, instead of answering 200 because `SELECT 1` still works (issue 16, defect 4)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mdm import create_app
from mdm.ground.db import upgrade_database


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MB file system (tmpfs), so "full" and "read-only" are what the kernel says."""
    mount = tmp_path / "disk"
    if os.geteuid() != 0 or not _mount_tmpfs(mount, "8m"):
        pytest.skip("mounting a small file system needs root (CAP_SYS_ADMIN)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def sqlite_app_on(settings):  # type: ignore[no-untyped-def]
    apps = []

    def make(folder: Path):  # type: ignore[no-untyped-def]
        instance = folder / "instance"
        instance.mkdir()
        url = f"sqlite:///{instance / 'hikeshi.db'}"
        upgrade_database(url)
        app = create_app(replace(settings, instance_path=instance, database_url=url, readyz_min_free_mb=2))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["hikeshi"].dispatcher.close()
        app.extensions["hikeshi"].engine.dispose()


def _fill(folder: Path) -> Path:
    filler = folder / "filler.bin"
    with open(filler, "wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    return filler


def test_disk_full_is_not_ready_and_recovers(small_disk: Path, sqlite_app_on) -> None:  # type: ignore[no-untyped-def]
    app = sqlite_app_on(small_disk)
    client = app.test_client()
    before = client.get("/readyz")
    assert before.get_json()["checks"]["disk"]["ok"] is True
    assert before.get_json()["checks"]["database"] == {"ok": True, "writable": True}

    filler = _fill(small_disk)
    full = client.get("/readyz")
    assert full.status_code == 503, full.get_json()
    body = full.get_json()
    assert body["status"] == "not ready" and "disk" in body["failing"]
    assert "below 2 MB" in body["checks"]["disk"]["detail"]

    filler.unlink()
    assert client.get("/readyz").get_json()["checks"]["disk"]["ok"] is True


def test_read_only_disk_is_not_ready_naming_database_and_disk(small_disk: Path, sqlite_app_on) -> None:  # type: ignore[no-untyped-def]
    app = sqlite_app_on(small_disk)
    client = app.test_client()
    assert client.get("/readyz").get_json()["checks"]["database"]["ok"] is True
    # A file system gone read-only (what the kernel does after I/O errors). The kernel refuses
    # to remount while files are open for writing, so the pool lets go of SQLite's file first.
    app.extensions["hikeshi"].engine.dispose()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        answer = client.get("/readyz")
        body = answer.get_json()
        assert answer.status_code == 503, body
        assert body["status"] == "not ready"
        assert {"database", "disk"} <= set(body["failing"])
        assert "Read-only file system" in body["checks"]["disk"]["detail"]
    finally:
        app.extensions["hikeshi"].engine.dispose()
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert client.get("/readyz").get_json()["checks"]["database"]["ok"] is True


@pytest.mark.postgres
def test_read_only_postgres_is_not_ready(app, database_url: str) -> None:  # type: ignore[no-untyped-def]
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL read-only transactions; run with HIKESHI_TEST_DATABASE_URL")
    name = make_url(database_url).database
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    client = app.test_client()
    assert client.get("/readyz").get_json()["checks"]["database"]["ok"] is True
    try:
        # What a standby, a read-only role or a full-disk guard rail gives every new session.
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
        app.extensions["hikeshi"].engine.dispose()
        answer = client.get("/readyz")
        body = answer.get_json()
        assert answer.status_code == 503 and body["status"] == "not ready", body
        assert body["failing"] == ["database"] or "database" in body["failing"]
        assert "read-only transaction" in body["checks"]["database"]["detail"]
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" RESET default_transaction_read_only'))
        admin.dispose()
        app.extensions["hikeshi"].engine.dispose()
    assert client.get("/readyz").get_json()["checks"]["database"]["ok"] is True
