"""The Android delivery takes the row lock of commands.delivery (it once marked commands sent
without it).

Two syncs of one tablet already queue behind each other on the device row, and a command sent but
unanswered is handed over again by design; what the lock guards is a delivery racing a change
made elsewhere. A command cancelled (by the console, the API or the hotline) while a sync is
taking it must stay cancelled and never reach the tablet. Without the lock the sync reads the
command as queued, waits only at its own UPDATE, then overwrites the committed cancellation with
"sent" and hands the command over.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import select, text

from commands.queue import cancel_command, enqueue_command
from mdm.ground.audit import Actor
from mdm.ground.db import transaction
from mdm.ground.models import Command, CommandStatus, Device

OPERATOR = Actor("operator-tanaka", "operator", "192.0.2.10")


def _wait_for_a_lock_wait(engine: Any, deadline: float) -> None:
    """Until another connection of this database waits for a row lock."""
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            if waiting:
                return
            conn.rollback()  # a fresh snapshot of pg_stat_activity at the next look
            time.sleep(0.02)
    raise AssertionError("the sync never waited for the cancelling transaction's row lock")


def _synced_agent(enroll_app: Any, agent_factory: Any, android_token: Any) -> tuple[Any, Any]:
    """The app's wiring and an agent enrolled and synced once, on PostgreSQL only."""
    hikeshi = enroll_app.extensions["hikeshi"]
    if hikeshi.engine.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's; on SQLite every write transaction runs alone")
    agent = agent_factory()
    agent.enroll(android_token())
    agent.sync()
    return hikeshi, agent


def test_a_command_cancelled_during_a_sync_is_never_handed_over(
    enroll_app: Any, agent_factory: Any, android_token: Any
) -> None:
    hikeshi, agent = _synced_agent(enroll_app, agent_factory, android_token)
    factory = hikeshi.session_factory
    with transaction(factory) as s:
        command_id = enqueue_command(
            s, s.get(Device, agent.device_id), "RestartDevice", {}, actor=OPERATOR, push=False
        ).id

    cancelling = factory()
    try:
        # The cancellation is written and its row locked, not yet committed.
        cancel_command(cancelling, cancelling.get(Command, command_id), actor=OPERATOR)
        cancelling.flush()
        answer: dict[str, Any] = {}
        syncing = threading.Thread(target=lambda: answer.update(agent.sync()))
        syncing.start()
        _wait_for_a_lock_wait(hikeshi.engine, time.monotonic() + 30)
        cancelling.commit()
    finally:
        cancelling.close()
    syncing.join(30)
    assert not syncing.is_alive()

    assert answer["commands"] == []
    with transaction(factory) as s:
        command = s.get(Command, command_id)
        assert command is not None
        assert command.status == CommandStatus.CANCELLED
        assert command.delivery_count == 0 and command.sent_at is None


def test_a_sync_takes_its_device_row_before_it_settles_or_claims_commands(
    enroll_app: Any, agent_factory: Any, android_token: Any
) -> None:
    """The device row comes before its commands (mdm.ground.device_rows), as the push dispatcher
    and an Apple answer take them: a sync that settled its results and then waited for the device
    row could hold a command another transaction, holding the device, wants next."""
    hikeshi, agent = _synced_agent(enroll_app, agent_factory, android_token)
    factory = hikeshi.session_factory
    with transaction(factory) as s:
        restart = enqueue_command(s, s.get(Device, agent.device_id), "RestartDevice", {}, actor=OPERATOR)
        restart_id = restart.id
    assert [c["id"] for c in agent.sync()["commands"]] == [restart.uuid]  # its result waits for the next sync
    with transaction(factory) as s:
        later = enqueue_command(s, s.get(Device, agent.device_id), "RestartDevice", {}, actor=OPERATOR)
        later_uuid = later.uuid

    holder = factory()
    try:
        holder.scalars(
            select(Device.id).where(Device.id == agent.device_id).with_for_update(key_share=True)
        ).one()
        answer: dict[str, Any] = {}
        syncing = threading.Thread(target=lambda: answer.update(agent.sync()))
        syncing.start()
        _wait_for_a_lock_wait(hikeshi.engine, time.monotonic() + 30)
        # Every command of the device is free while the sync waits: it holds none of them yet.
        with holder.begin_nested():
            holder.execute(
                text("SELECT id FROM commands WHERE device_id = :d FOR NO KEY UPDATE NOWAIT"),
                {"d": agent.device_id},
            ).all()
        holder.commit()
    finally:
        holder.close()
    syncing.join(30)
    assert not syncing.is_alive()

    assert [c["id"] for c in answer["commands"]] == [later_uuid]
    with transaction(factory) as s:
        assert s.get(Command, restart_id).status == CommandStatus.ACKNOWLEDGED
