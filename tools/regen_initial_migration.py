"""Development helper: rewrite the initial migration from the models.

Used only until the first release is deployed anywhere; after that, every schema change is a new
Alembic revision (`alembic revision --autogenerate`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from alembic import command

from mdm.db import MIGRATIONS_DIR, alembic_config

VERSIONS = MIGRATIONS_DIR / "versions"


def main() -> None:
    for old in VERSIONS.glob("*.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = alembic_config(f"sqlite:///{Path(tmp) / 'blank.db'}")
        command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
    print("rewrote", *VERSIONS.glob("*.py"))


if __name__ == "__main__":
    main()
