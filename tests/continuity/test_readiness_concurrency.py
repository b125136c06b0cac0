"""Several transactions changing tablets of one unit at once (two app nodes, a hotline call and a
check-in): the published readiness ends right, and event ids follow the order of the changes."""

from __future__ import annotations

import threading

from sqlalchemy import select

from mdm.ground.db import make_session_factory
from mdm.ground.models import Device, EnrollmentState, ReadinessEvent, UnitReadinessState
from mdm.roots.wiring import wire
from tests.continuity.helpers import build_tree, tablet


def test_concurrent_changes_end_in_the_right_state(session, clean_database):
    tree = build_tree(session)
    ids = [tablet(session, tree.command, f"指揮 iPad {n}").id for n in range(4)]
    session.commit()
    writers = make_session_factory(clean_database)  # IMMEDIATE on SQLite, like the server's sessions
    # As in the server: each commit asks for readiness, a background drain recomputes it.
    wiring = wire(writers, None)
    start = threading.Barrier(len(ids))
    errors: list[BaseException] = []

    def retire(device_id: int) -> None:
        try:
            with writers() as s:
                start.wait(5)
                s.get(Device, device_id).enrollment_state = EnrollmentState.RETIRED
                s.commit()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=retire, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert wiring.drainer is not None and wiring.drainer.wait_idle(30)
    session.rollback()
    session.expire_all()
    row = session.get(UnitReadinessState, tree.command.id)
    assert (row.state, row.working, row.required) == ("critical", 0, 2)
    events = session.scalars(
        select(ReadinessEvent)
        .where(ReadinessEvent.org_unit_id == tree.command.id)
        .order_by(ReadinessEvent.id)
    ).all()
    working = [e.payload["working"] for e in events]
    assert working[0] == 4 and working[-1] == 0
    assert working == sorted(working, reverse=True), working  # ids in the order the changes committed
    assert row.last_event_id == events[-1].id
