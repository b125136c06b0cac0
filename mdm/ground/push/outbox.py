"""The transactional outbox (mdm.ground.models.outbox): ask in the same transaction, drain after commit.

Generic over topics, so every "do this once the commit is in" shares one table, one drain and one
rule: a row is written with the change that needs it; a drainer claims due rows (FOR UPDATE SKIP
LOCKED on PostgreSQL, so two drainers never take the same row) with a short lease, does the
work outside any transaction, then settles them (done: delete; failed: back off durably).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import DateTime, Integer, String, Table, bindparam, delete, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.models.outbox import OutboxEntry

# A request is first the job of the after-commit dispatcher of the process that made it; drainers
# leave it alone this long, so a healthy node pushes once, and a killed one is covered.
FIRST_ATTEMPT_GRACE = timedelta(seconds=30)
# How long a claimed row is left to its drainer before another may take it.
CLAIM_LEASE = timedelta(seconds=60)
# Failed attempts after which a request is given up (hours at the breaker's longest backoff).
MAX_ATTEMPTS = 100


def request(session: Session, topic: str, subject_ids: Iterable[int]) -> None:
    """Record that each subject needs `topic` done; joins a request already waiting.

    One statement whatever the number of subjects: on PostgreSQL the ids travel as one array, on
    SQLite the rows as one executemany."""
    ids = sorted(set(subject_ids))
    if not ids:
        return
    now = clock.now()
    due = now + FIRST_ATTEMPT_GRACE
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            _REQUEST_ONE_TOPIC, {"topic": topic, "subject_ids": ids, "requested_at": now, "due_at": due}
        )
        return
    rows = [
        {"topic": topic, "subject_id": i, "requested_at": now, "next_attempt_at": due, "attempts": 0}
        for i in ids
    ]
    session.execute(_SQLITE_REQUEST, rows)


# session.info key: {topic: subject ids} asked in this transaction, written by `write_asked`.
ASKED_KEY = "hikeshi.outbox.asked"
# session.info key: set once a transaction wrote rows the drain (mdm.ground.outbox_drain) takes.
WRITTEN_KEY = "hikeshi.outbox.written"


def ask(session: Session, topic: str, subject_ids: Iterable[int]) -> None:
    """Note in this transaction that each subject needs `topic` done; `write_asked` (a
    before_commit listener, after every hook that asks) writes what every hook asked in one
    statement, due at once: the drain does it in its own transaction, with the row's deletion."""
    session.info.setdefault(ASKED_KEY, {}).setdefault(topic, set()).update(subject_ids)


def write_asked(session: Session) -> None:
    """The before_commit listener that writes what `ask` noted: one statement on PostgreSQL
    whatever the number of topics and subjects (two arrays), one executemany on SQLite."""
    if session.in_nested_transaction():
        return  # a savepoint released: the real commit writes
    asked: dict[str, set[int]] | None = session.info.pop(ASKED_KEY, None)
    pairs = sorted((topic, i) for topic, ids in (asked or {}).items() for i in ids)
    if not pairs:
        return
    now = clock.now()
    session.info[WRITTEN_KEY] = True
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            _REQUEST_TOPICS,
            {
                "topics": [t for t, _ in pairs],
                "subject_ids": [i for _, i in pairs],
                "requested_at": now,
                "due_at": now,
            },
        )
        return
    rows = [
        {"topic": t, "subject_id": i, "requested_at": now, "next_attempt_at": now, "attempts": 0}
        for t, i in pairs
    ]
    session.execute(_SQLITE_REQUEST, rows)


def forget_asked(session: Session, previous: Any) -> None:
    """The after_soft_rollback listener: what a rolled-back transaction asked never happened."""
    if not getattr(previous, "nested", False):
        session.info.pop(ASKED_KEY, None)
        session.info.pop(WRITTEN_KEY, None)


def claim_batch(session: Session, topics: Sequence[str], *, limit: int) -> list[OutboxEntry]:
    """Take up to `limit` due rows of `topics` in this transaction, to be settled in it
    (`settle_claimed`) with the work they ask for. On PostgreSQL the rows stay locked until it
    ends (SKIP LOCKED: another drainer takes the next ones; a request for the same subject waits
    and then writes a new row); a drainer killed mid-batch rolls back its work and its claim."""
    stmt = (
        select(OutboxEntry)
        .where(OutboxEntry.topic.in_(list(topics)), OutboxEntry.next_attempt_at <= clock.now())
        .order_by(OutboxEntry.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.scalars(stmt))


def settle_claimed(session: Session, entries: Sequence[OutboxEntry]) -> None:
    """The work of these claimed rows is done in this transaction: delete them with it."""
    if entries:
        session.execute(
            delete(OutboxEntry)
            .where(OutboxEntry.id.in_(sorted(e.id for e in entries)))
            .execution_options(synchronize_session=False)
        )


def _join_waiting(stmt: Any) -> Any:
    # A waiting row keeps its backoff (APNs may be down) but learns the newer request, so a push
    # that succeeded for the older one does not settle this one.
    return stmt.on_conflict_do_update(
        index_elements=["topic", "subject_id"],
        set_={"requested_at": stmt.excluded.requested_at},
    )


_OUTBOX_TABLE = cast(Table, OutboxEntry.__table__)


def _postgres_request(topic: Any) -> Any:
    """PostgreSQL's INSERT of requests for subjects bound as one array (`subject_ids`), at
    `requested_at`, due at `due_at`; `topic` is an expression (one bound topic, or an array
    unnested beside the subjects)."""
    subjects = select(
        topic.label("topic"),
        func.unnest(bindparam("subject_ids", type_=postgresql.ARRAY(Integer))).label("subject_id"),
        bindparam("requested_at", type_=DateTime(timezone=True)).label("requested_at"),
        bindparam("due_at", type_=DateTime(timezone=True)).label("next_attempt_at"),
        literal(0, Integer).label("attempts"),
    )
    # Into the table, not the entity: an ORM INSERT takes bound values as rows to insert.
    stmt = postgresql.insert(_OUTBOX_TABLE).from_select(
        ["topic", "subject_id", "requested_at", "next_attempt_at", "attempts"], subjects
    )
    return _join_waiting(stmt)


# Built once: building a statement costs more CPU than running it, and every commit of a device
# request that asks the drain for something runs one (issue 18). SQLite's takes its rows as one
# executemany (a statement of many VALUES was built anew for every commit).
_SQLITE_REQUEST = _join_waiting(sqlite.insert(_OUTBOX_TABLE))
_REQUEST_ONE_TOPIC = _postgres_request(bindparam("topic", type_=String))
_REQUEST_TOPICS = _postgres_request(func.unnest(bindparam("topics", type_=postgresql.ARRAY(String))))


def claim_due(session: Session, topic: str, *, limit: int = 500, lease: timedelta = CLAIM_LEASE) -> list[int]:
    """Take up to `limit` due subjects for this drainer, in id order, leased for `lease`."""
    now = clock.now()
    stmt = (
        select(OutboxEntry)
        .where(OutboxEntry.topic == topic, OutboxEntry.next_attempt_at <= now)
        .order_by(OutboxEntry.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    entries = list(session.scalars(stmt))
    for entry in entries:
        entry.next_attempt_at = now + lease
    session.flush()
    return sorted(e.subject_id for e in entries)


def settle(session: Session, topic: str, subject_ids: Sequence[int], *, requested_before: datetime) -> None:
    """The work is done for these subjects: drop their rows, unless asked again since it began."""
    if subject_ids:
        session.execute(
            delete(OutboxEntry)
            .where(
                OutboxEntry.topic == topic,
                OutboxEntry.subject_id.in_(sorted(subject_ids)),
                OutboxEntry.requested_at <= requested_before,
            )
            .execution_options(synchronize_session=False)
        )


def drop(session: Session, topic: str, subject_ids: Sequence[int]) -> None:
    """Nothing can be done for these subjects (no push token, say): forget the request."""
    if subject_ids:
        session.execute(
            delete(OutboxEntry)
            .where(OutboxEntry.topic == topic, OutboxEntry.subject_id.in_(sorted(subject_ids)))
            .execution_options(synchronize_session=False)
        )


def retry_later(
    session: Session,
    topic: str,
    subject_ids: Sequence[int],
    *,
    error: str,
    delay: timedelta,
    max_attempts: int = MAX_ATTEMPTS,
) -> None:
    """The attempt failed: count it and make the rows due again after `delay` (durable backoff).

    A row that failed `max_attempts` times is given up, so nothing retries for ever; for a
    command still waiting, the re-push sweep asks again on its own, slower schedule."""
    if subject_ids:
        session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.topic == topic, OutboxEntry.subject_id.in_(sorted(subject_ids)))
            .values(
                attempts=OutboxEntry.attempts + 1,
                next_attempt_at=clock.now() + delay,
                last_error=error[:255],
            )
            .execution_options(synchronize_session=False)
        )
        session.execute(
            delete(OutboxEntry)
            .where(
                OutboxEntry.topic == topic,
                OutboxEntry.subject_id.in_(sorted(subject_ids)),
                OutboxEntry.attempts >= max_attempts,
            )
            .execution_options(synchronize_session=False)
        )


def next_due(session: Session, topic: str) -> datetime | None:
    """When the earliest row of a topic falls due (None when none waits)."""
    return session.scalar(select(func.min(OutboxEntry.next_attempt_at)).where(OutboxEntry.topic == topic))


def waiting(session: Session, topic: str) -> list[OutboxEntry]:
    """Every row of a topic (operators, tests)."""
    return list(
        session.scalars(select(OutboxEntry).where(OutboxEntry.topic == topic).order_by(OutboxEntry.id))
    )
