"""What an attack must leave unchanged: every row of the device, certificate, queue and incident
tables, read in a fresh session so nothing cached hides a write."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from mdm.ground.db import read_mostly

GUARDED = ("devices", "device_certificates", "commands", "incidents", "incident_steps")


def snapshot(engine: Engine, tables: tuple[str, ...] = GUARDED) -> dict[str, list[tuple[Any, ...]]]:
    with read_mostly(engine).connect() as conn:
        return {
            table: [tuple(row) for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))]
            for table in tables
        }
