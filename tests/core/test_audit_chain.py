from __future__ import annotations

from sqlalchemy import text

from mdm.ground.audit import GENESIS, SYSTEM, Actor, record_event, verify_chain


def test_chain_links_every_event(session):
    for n in range(5):
        record_event(session, SYSTEM, "test.event", "thing", n, {"n": n, "名前": "中央署"})
    session.commit()
    report = verify_chain(session)
    assert report.ok and report.checked == 5


def test_first_event_links_to_genesis(session):
    event = record_event(session, SYSTEM, "test.event")
    session.commit()  # sealed by then on both databases (PostgreSQL: after the commit)
    session.refresh(event)
    assert event.prev_hash == GENESIS and event.seq == 1


def test_secrets_are_redacted(session):
    event = record_event(session, Actor("a", "admin"), "user.created", details={"password": "hunter2hunter2"})
    assert event.details["password"] == "[redacted]"


def test_changed_row_is_named(session):
    for n in range(4):
        record_event(session, SYSTEM, "test.event", "thing", n, {"n": n})
    session.commit()
    session.execute(text("UPDATE audit_events SET details = :d WHERE seq = 3"), {"d": '{"n": 99}'})
    session.commit()
    session.expire_all()
    report = verify_chain(session)
    assert not report.ok and report.broken_seq == 3 and "hash" in (report.reason or "")


def test_deleted_row_is_detected(session):
    for n in range(4):
        record_event(session, SYSTEM, "test.event", "thing", n, {"n": n})
    session.commit()
    session.execute(text("DELETE FROM audit_events WHERE seq = 2"))
    session.commit()
    session.expire_all()
    report = verify_chain(session)
    assert not report.ok and report.broken_seq == 3
