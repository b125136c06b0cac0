"""Issue 15 item 5: the SQLite database and its side files (-wal, -shm, -journal) are 0600, made
by a real `hikeshi db upgrade` under a permissive umask, and tightened when found looser."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from mdm.ground.db import SIDE_SUFFIXES, make_engine

BIN = Path(sys.executable).parent


def _modes(folder: Path) -> dict[str, int]:
    return {
        p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir() if p.name.startswith("hikeshi.db")
    }


def test_db_upgrade_makes_private_database_files(tmp_path):
    instance = tmp_path / "instance"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIKESHI_")}
    env["HIKESHI_INSTANCE_PATH"] = str(instance)
    subprocess.run(
        ["sh", "-c", f"umask 022 && exec '{BIN / 'hikeshi'}' db upgrade"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    engine = make_engine(f"sqlite:///{instance / 'hikeshi.db'}")
    old = os.umask(0o022)
    try:
        # A connection that stays open keeps the -wal and -shm files in place while we look.
        with engine.connect() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS probe (x INTEGER)"))
            conn.execute(text("INSERT INTO probe VALUES (1)"))
            conn.commit()
            modes = _modes(instance)
    finally:
        os.umask(old)
        engine.dispose()
    assert "hikeshi.db" in modes and "hikeshi.db-wal" in modes, modes
    assert all(mode == 0o600 for mode in modes.values()), {k: oct(v) for k, v in modes.items()}
    assert stat.S_IMODE(instance.stat().st_mode) == 0o700


def test_loose_files_are_tightened_on_connect(tmp_path):
    database = tmp_path / "hikeshi.db"
    engine = make_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        conn.execute(text("CREATE TABLE probe (x INTEGER)"))
        conn.commit()
    engine.dispose()
    for path in [database, *(Path(f"{database}{s}") for s in SIDE_SUFFIXES)]:
        path.touch()
        os.chmod(path, 0o644)
    engine = make_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM probe")).scalar() == 0
        modes = _modes(tmp_path)
    engine.dispose()
    assert all(mode == 0o600 for mode in modes.values()), {k: oct(v) for k, v in modes.items()}
