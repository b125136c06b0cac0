"""Development helper: rewrite the newest migration, the one not yet in a release, from the models.

0001 has landed and may be deployed, so it is frozen; this session's schema changes live in 0002
until they are released. Run `python tools/regen_migration.py` after changing a model: it
deletes 0002, upgrades a blank database to 0001 and autogenerates 0002 from the difference.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from alembic import command

from mdm.ground.db import MIGRATIONS_DIR, alembic_config

VERSIONS = MIGRATIONS_DIR / "versions"
FROZEN = "0001"
OPEN_REVISION = "0002"
OPEN_MESSAGE = "readiness, android agents, profile challenges"


def main() -> None:
    for old in VERSIONS.glob(f"{OPEN_REVISION}_*.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = alembic_config(f"sqlite:///{Path(tmp) / 'blank.db'}")
        command.upgrade(cfg, FROZEN)
        script = command.revision(cfg, message=OPEN_MESSAGE, autogenerate=True, rev_id=OPEN_REVISION)
    produced = Path(script.path) if script is not None and not isinstance(script, list) else None
    if produced is not None and "pass" in _upgrade_body(produced):
        produced.unlink()
        print("models match", FROZEN, "- no open migration needed")
        return
    print("rewrote", *VERSIONS.glob(f"{OPEN_REVISION}_*.py"))


def _upgrade_body(path: Path) -> str:
    text = path.read_text()
    start = text.index("def upgrade()")
    end = text.index("def downgrade()")
    body = [line.strip() for line in text[start:end].splitlines()[1:] if line.strip()]
    return " ".join(line for line in body if not line.startswith("#"))


if __name__ == "__main__":
    main()
