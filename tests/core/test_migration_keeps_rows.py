"""Upgrading a SQLite database that holds an incident history keeps every row.

Batch migrations rebuild a SQLite table by dropping it; with foreign keys on, that drop either
deletes the rows that refer to it (ON DELETE CASCADE) or fails. The migration environment turns
foreign keys off for the upgrade and checks them before it commits."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from mdm.ground.db import make_engine, upgrade_database

NOW = "2026-11-01 00:00:00.000000"


def _count(url: str, table: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def test_upgrade_from_0002_keeps_incidents_their_steps_and_device_facts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    upgrade_database(url, "0002")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO devices (id, platform, udid, is_supervised, enrollment_state, created_at) "
                "VALUES (1, 'apple', 'udid-1', 0, 'enrolled', :now)"
            ),
            {"now": NOW},
        )
        conn.execute(
            text(
                "INSERT INTO device_facts (device_id, raw_device_information, raw_security_info) "
                "VALUES (1, '{}', '{}')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO incidents (id, device_id, status, kind, caller_name, caller_unit, "
                "callback_number, lost_place, notes, operator, opened_at, lost_mode, break_glass) "
                "VALUES (1, 1, 'open', 'lost', '山田', '救急1', '0312345678', '駅前', '', 'op', :now, 0, 0)"
            ),
            {"now": NOW},
        )
        conn.execute(
            text(
                "INSERT INTO incident_steps (incident_id, action, actor, actor_role, occurred_at, "
                "details, flagged) VALUES (1, 'opened', 'op', 'operator', :now, '{}', 0)"
            ),
            {"now": NOW},
        )
    engine.dispose()

    upgrade_database(url, "head", secret_key="k" * 64)

    assert _count(url, "incidents") == 1
    assert _count(url, "incident_steps") == 1
    assert _count(url, "device_facts") == 1
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    finally:
        engine.dispose()
