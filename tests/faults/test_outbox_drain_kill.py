"""A drainer of the outbox killed mid-batch (issue 18): the work the commits asked for (compliance
after inventory, then readiness) is done exactly once anyway, by the next drainer.

Real processes on PostgreSQL: a `hikeshi serve` whose scheduler drains the outbox
(mdm.ground.outbox_drain) is SIGKILLed while its second batch is half done, held at one device by
a row this test has not committed; then a second `hikeshi serve` drains what is left.
"""

from __future__ import annotations

import os
import signal
from datetime import datetime

import pytest
from sqlalchemy import func, insert, select, text

from mdm.ground import clock
from mdm.ground.db import make_session_factory
from mdm.ground.models import (
    Alert,
    ComplianceFinding,
    DeviceCompliance,
    DeviceFacts,
    OutboxEntry,
    OutboxTopic,
)
from mdm.ground.outbox_drain import BATCH
from mdm.ground.push import outbox
from mdm.services.continuity.hooks import READINESS_TOPICS
from mdm.services.continuity.readiness import recompute
from tests.continuity.helpers import build_tree, tablet
from tests.faults.harness import running_server, wait_for

DEVICES = BATCH + 30
HELD = BATCH + 10  # the device (by position) whose evaluation the test holds up


def _waiting(factory, topics: tuple[str, ...]) -> int:  # type: ignore[no-untyped-def]
    with factory() as s:
        return s.scalar(select(func.count()).select_from(OutboxEntry).where(OutboxEntry.topic.in_(topics)))


@pytest.mark.slow
def test_a_drainer_killed_mid_batch_loses_nothing_and_repeats_nothing(
    session, settings, clean_database, tmp_path, database_url
):  # type: ignore[no-untyped-def]
    if not database_url.startswith("postgresql"):
        pytest.skip("a drainer holding its claim in an open transaction, killed: PostgreSQL")
    tree = build_tree(session)
    ids = [tablet(session, tree.ambulance3, f"救急3 iPad {n}").id for n in range(DEVICES)]
    session.commit()

    # What DEVICES SecurityInfo answers leave behind: no passcode, and a committed outbox row each
    # asking for compliance, from a process that died before draining (no drainer in this one).
    bare = make_session_factory(clean_database)
    with bare() as s:
        s.execute(
            insert(DeviceFacts),
            [{"device_id": i, "passcode_present": False} for i in ids],
        )
        outbox.ask(s, OutboxTopic.SETTLE_INVENTORY, ids)
        outbox.write_asked(s)
        s.commit()
    settle = (OutboxTopic.SETTLE_INVENTORY,)
    assert _waiting(bare, settle) == DEVICES

    # The first evaluation of the held device waits for this uncommitted compliance row.
    held = clean_database.connect()
    held_tx = held.begin()
    held.execute(
        insert(DeviceCompliance).values(
            device_id=ids[HELD], state="ok", open_findings=0, evaluated_at=clock.now()
        )
    )

    def blocked_on_the_held_row() -> bool:
        with clean_database.connect() as c:
            waiting = c.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        return bool(waiting)

    with running_server(settings, bare, tmp_path) as first:
        # Its scheduler's outbox_drain sweep: one batch committed, the next held mid-way.
        wait_for(lambda: _waiting(bare, settle) == DEVICES - BATCH, 120, "the first batch")
        wait_for(blocked_on_the_held_row, 60, "the second batch to reach the held device")
        drainer = first.scheduler_pid()
        assert drainer is not None
        victims = {drainer, *first.children(), first.proc.pid}
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        first.proc.wait(30)

    with bare() as s:
        # Done once: the first batch, each device with its finding; nothing of the second.
        first_pass = dict(s.execute(select(DeviceCompliance.device_id, DeviceCompliance.evaluated_at)).all())
        assert sorted(first_pass) == ids[:BATCH]
        assert s.scalar(select(func.count()).select_from(ComplianceFinding)) == BATCH
    held_tx.rollback()
    held.close()
    # The killed drainer's backend gives up its claim once it finds its client gone.
    wait_for(lambda: not blocked_on_the_held_row(), 60, "the killed drainer's transaction to end")
    assert _waiting(bare, settle) == DEVICES - BATCH

    with running_server(settings, bare, tmp_path):
        wait_for(lambda: _waiting(bare, settle) == 0, 120, "the second drainer")
        every_topic = (*settle, *READINESS_TOPICS)
        wait_for(lambda: _waiting(bare, every_topic) == 0, 60, "readiness drained")

    with bare() as s:
        findings = s.execute(
            select(ComplianceFinding.device_id, func.count()).group_by(ComplianceFinding.device_id)
        ).all()
        assert dict(findings) == dict.fromkeys(ids, 1)  # none lost, none twice
        rules = set(s.scalars(select(ComplianceFinding.rule)))
        assert rules == {"passcode_missing"}
        alerts = s.execute(
            select(Alert.device_id, func.count())
            .where(Alert.kind == "compliance.passcode_missing")
            .group_by(Alert.device_id)
        ).all()
        assert dict(alerts) == dict.fromkeys(ids, 1)
        evaluated: dict[int, datetime] = dict(
            s.execute(select(DeviceCompliance.device_id, DeviceCompliance.evaluated_at)).all()
        )
        assert sorted(evaluated) == ids
        # The first batch was not evaluated again by the second drainer.
        assert {i: evaluated[i] for i in first_pass} == first_pass
        # Every device is critical. If one is not, say which (by position; HELD is the held one)
        # and when it was evaluated: a state that disagrees with its finding is a lost write.
        states = dict(s.execute(select(DeviceCompliance.device_id, DeviceCompliance.state)).all())
        wrong = {
            ids.index(i): (state, evaluated[i].isoformat(), "first pass" if i in first_pass else "second")
            for i, state in states.items()
            if state != "critical"
        }
        assert wrong == {}, f"HELD={HELD}, BATCH={BATCH}: {wrong}"
        # Readiness followed every compliance change: a fresh recompute finds nothing to publish.
        assert recompute(s, None) == []
        s.rollback()
