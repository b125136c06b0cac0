"""The drain of the outbox's in-transaction topics: work a commit leaves for after it, done once.

A transaction that changed something others react to (inventory: compliance; a device or a unit:
readiness) writes outbox rows (mdm.ground.push.outbox.ask) instead of doing that work before its
commit, so a device's request pays one statement for it. Right after the commit, this process's
drainer takes the rows (a background thread in a server, the committing thread in a CLI command),
and the scheduler's `outbox_drain` job sweeps whatever a killed process left.

One fencing rule for every row of the outbox (mdm.ground.push.outbox): a row belongs to the
drainer whose claim holds it, FOR UPDATE SKIP LOCKED on PostgreSQL while the claim is not
committed, the lease it committed after that. The push dispatcher's work is a network call, so its
claim is committed with a lease and the outcome settled later; the work drained here is the
database's own, so it is done in the claiming transaction and the rows are deleted in it too:
either the effect and the deletion commit together, or neither does (a drainer killed mid-batch
leaves the rows as they were, for the next drainer). Exactly once, without trusting any process.

Which work a topic asks for is the wiring's decision (`connect`, per session factory, as
mdm.ground.hooks does for hook points): the ground knows no service.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from mdm.ground.db import transaction
from mdm.ground.push import outbox
from mdm.ground.wake_worker import WakeWorker

log = logging.getLogger(__name__)

# Set on a session whose commits its owner drains itself, once, after a run of transactions (a
# fleet job's pages): the rows wait, committed, and a job stopped midway leaves them to the
# next drain or the scheduler's sweep.
DRAIN_LATER_KEY = "hikeshi.outbox.drain_later"

# subject ids by topic, of the rows claimed in one transaction
Handler = Callable[[Session, dict[str, list[int]]], None]
# Rows per transaction: a batch of devices is evaluated with one query per table.
BATCH = 200
# A batch that failed is retried one row at a time; a row that fails alone waits this long.
FAILED_RETRY = timedelta(seconds=30)
# A server's background drain starts a pass at most this often (mdm.ground.wake_worker): under
# load each pass takes many requests' rows, well inside readiness's one second to a subscriber.
GATHER_SECONDS = 0.1


@dataclass(frozen=True)
class Drained:
    topics: tuple[str, ...]
    handler: Handler


# Set while this thread drains: the drain's own commits (compliance asking for readiness) are
# taken by the loop under way, not by a drain nested in its after_commit.
_DRAINING = threading.local()

_CONNECTED: weakref.WeakKeyDictionary[type[Session], list[Drained]] = weakref.WeakKeyDictionary()


def connect(factory: sessionmaker[Session], topics: Sequence[str], handler: Handler) -> None:
    """Drain `topics` of every session of `factory` with `handler`, in the order connected."""
    _CONNECTED.setdefault(factory.class_, []).append(Drained(tuple(topics), handler))


def drained_for(factory: sessionmaker[Session]) -> list[Drained]:
    """What is drained for `factory`: its own, after those of the factory it derives from."""
    found: list[Drained] = []
    for cls in reversed(factory.class_.__mro__):
        found.extend(_CONNECTED.get(cls, ()))
    return found


def drain(factory: sessionmaker[Session], *, batch: int = BATCH) -> int:
    """Do the work of every due row, topic group by topic group in the order connected, until
    none is left (work may ask for more: compliance changes readiness); returns rows settled."""
    total = 0
    groups = drained_for(factory)
    while True:
        settled = sum(_drain_group(factory, group, batch) for group in groups)
        total += settled
        if not settled:
            return total


def _drain_group(factory: sessionmaker[Session], group: Drained, batch: int) -> int:
    total = 0
    while True:
        try:
            with transaction(factory, writes=True) as session:
                entries = outbox.claim_batch(session, group.topics, limit=batch)
                if entries:
                    group.handler(session, _by_topic(entries))
                    outbox.settle_claimed(session, entries)
                claimed = [(e.topic, e.subject_id) for e in entries]
        except Exception:
            log.exception("outbox batch of %s failed; retrying its rows one by one", group.topics)
            return total + _drain_one_by_one(factory, group, batch)
        total += len(claimed)
        if len(claimed) < batch:
            return total


def _drain_one_by_one(factory: sessionmaker[Session], group: Drained, batch: int) -> int:
    """After a failed batch: each row in its own transaction, so one bad row holds back no other."""
    settled = 0
    for _ in range(batch):
        failed: tuple[str, int] | None = None
        try:
            with transaction(factory, writes=True) as session:
                entries = outbox.claim_batch(session, group.topics, limit=1)
                if not entries:
                    return settled
                failed = (entries[0].topic, entries[0].subject_id)
                group.handler(session, _by_topic(entries))
                outbox.settle_claimed(session, entries)
            settled += 1
        except Exception as exc:
            if failed is None:
                raise
            log.exception("outbox row %s failed; retried in %s", failed, FAILED_RETRY)
            with transaction(factory, writes=True) as session:
                outbox.retry_later(session, failed[0], [failed[1]], error=repr(exc), delay=FAILED_RETRY)
    return settled


def _by_topic(entries: Sequence[outbox.OutboxEntry]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for entry in entries:
        found.setdefault(entry.topic, []).append(entry.subject_id)
    return {topic: sorted(ids) for topic, ids in found.items()}


class OutboxDrainer:
    """One per session factory: drains right after a commit that wrote rows for the drain.

    In a server, a background thread of the process does it (the request answers without waiting,
    and one pass takes the rows of every request committed meanwhile: a batch); where the process
    may exit at once (the CLI) or a test reads right after its commit, the committing thread."""

    def __init__(self, factory: sessionmaker[Session], *, background: bool = True) -> None:
        self.factory = factory
        self.background = background
        self._worker = WakeWorker("hikeshi-outbox-drain", self._drain_in_background, gather=GATHER_SECONDS)

    def listeners(self) -> list[tuple[str, Callable[..., None]]]:
        """(event, listener): what is asked is written last before the commit, drained after it.
        The listener holds the drainer, as the audit sealer's does: a factory wired and then
        let go by its caller (the tests' fixtures) still drains."""
        return [
            ("before_commit", outbox.write_asked),
            ("after_soft_rollback", outbox.forget_asked),
            ("after_commit", self.after_commit),
        ]

    def after_commit(self, session: Session) -> None:
        if session.in_nested_transaction() or not session.info.pop(outbox.WRITTEN_KEY, False):
            return
        if session.info.get(DRAIN_LATER_KEY):
            return
        if getattr(_DRAINING, "active", False):
            return  # the drain's own commit: its loop takes what it asked for
        if self.background:
            self.wake()
            return
        _DRAINING.active = True
        try:
            drain(self.factory)
        except Exception:  # the rows stay; the next commit or the scheduler's sweep drains them
            log.exception("draining the outbox after commit failed; the scheduler retries")
        finally:
            _DRAINING.active = False

    def wake(self) -> None:
        self._worker.wake()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until what the commits so far asked for is drained (a test, a CLI before exit)."""
        return self._worker.wait_idle(timeout)

    def close(self, timeout: float = 10.0) -> bool:
        """Drain what the commits so far asked for, then end the thread."""
        return self._worker.close(timeout)

    def _drain_in_background(self) -> None:
        _DRAINING.active = True  # this thread's own commits are taken by its loop
        try:
            drain(self.factory)
        except Exception:  # the rows stay; the next wake-up or the scheduler's sweep drains them
            log.exception("draining the outbox failed; the next wake-up or the sweep retries")
