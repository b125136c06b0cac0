"""Retention purge: old events go only through a recorded, chained `audit.purge` event, so the
chain still verifies; a broken chain is never purged."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text

from mdm.ground.audit import SYSTEM, Actor, AuditChainBroken, purge_audit, record_event, verify_chain
from mdm.ground.models import AuditEvent
from mdm.roots.cli import main


def _write(session: Any, n: int, action: str = "test.event") -> None:
    for i in range(n):
        record_event(session, SYSTEM, action, "test", i, {"i": i})
    session.commit()


def test_purge_keeps_the_chain_verifiable(session: Any, frozen_clock: Any) -> None:
    _write(session, 5, "old.event")
    frozen_clock.advance(days=400)
    cutoff = frozen_clock.current
    _write(session, 3, "new.event")
    last_old = session.scalars(select(AuditEvent).where(AuditEvent.seq == 5)).one()
    event = purge_audit(session, cutoff, Actor("cli:ops", "admin", "local"))
    session.commit()
    assert event is not None and event.action == "audit.purge"
    assert event.details["up_to_seq"] == 5 and event.details["last_purged_hash"] == last_old.hash
    assert event.details["purged_events"] == 5
    assert session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all() == ["new.event"] * 3 + [
        "audit.purge"
    ]
    assert verify_chain(session).ok
    # A second purge later anchors on the newest purge record, and the chain still holds.
    frozen_clock.advance(days=400)
    _write(session, 2, "newer.event")
    assert purge_audit(session, frozen_clock.current, SYSTEM) is not None
    session.commit()
    assert verify_chain(session).ok
    assert session.scalar(select(func.count(AuditEvent.id))) == 3  # two newer ones + the second purge
    assert purge_audit(session, cutoff, SYSTEM) is None  # nothing that old is left
    session.rollback()


def test_purge_stops_at_the_first_event_still_within_retention(session: Any, frozen_clock: Any) -> None:
    _write(session, 2, "old")
    frozen_clock.advance(days=10)
    _write(session, 1, "recent")
    frozen_clock.advance(days=-20)  # a clock step backwards: this event is "older" but later in the chain
    _write(session, 1, "odd")
    frozen_clock.advance(days=20)
    purge_audit(session, frozen_clock.current - timedelta(days=5), SYSTEM)
    session.commit()
    assert session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all() == [
        "recent",
        "odd",
        "audit.purge",
    ]
    assert verify_chain(session).ok


def test_a_tampered_chain_is_not_purged(session: Any, frozen_clock: Any) -> None:
    _write(session, 3)
    session.execute(text("UPDATE audit_events SET actor = 'user:eve' WHERE seq = 2"))
    session.commit()
    frozen_clock.advance(days=10)
    with pytest.raises(AuditChainBroken) as raised:
        purge_audit(session, frozen_clock.current, SYSTEM)
    session.rollback()
    assert raised.value.report.broken_seq == 2
    assert session.scalar(select(func.count(AuditEvent.id))) == 3


def test_cli_purge_and_verify(
    settings: Any, session_factory: Any, frozen_clock: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("HIKESHI_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HIKESHI_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("HIKESHI_SECRET_KEY", settings.secret_key)
    with session_factory() as session:
        _write(session, 4)
    frozen_clock.advance(days=31)
    runner = CliRunner()
    result = runner.invoke(main, ["audit", "purge", "--days", "30"])
    assert result.exit_code == 0, result.output
    assert "purged 4 events up to seq 4" in result.output
    verified = runner.invoke(main, ["audit", "verify"])
    assert verified.exit_code == 0 and "intact" in verified.output
    with session_factory() as session:
        victim = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).first()
        session.execute(text("UPDATE audit_events SET details = '{}' WHERE id = :id"), {"id": victim.id})
        session.commit()
    broken = runner.invoke(main, ["audit", "verify"])
    assert broken.exit_code == 1 and f"event id {victim.id}" in broken.output
    refused = runner.invoke(main, ["audit", "purge", "--days", "1"])
    assert refused.exit_code == 1 and "refused" in refused.output
