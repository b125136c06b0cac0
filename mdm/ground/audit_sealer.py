"""Seals audit events into the chain right after the transaction that wrote them commits.

The sealer listens to one session factory: a commit that wrote unsealed events wakes a thread
of this process, which seals everything committed and unsealed in short transactions of its own
(mdm.ground.audit.seal_pending). A process that dies before sealing leaves its events to the next
wake-up anywhere, or to the scheduler's sweep (`audit_seal`), so nothing stays unsealed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground.audit import UNSEALED_WRITTEN, seal_pending
from mdm.ground.db import transaction
from mdm.ground.wake_worker import WakeWorker

log = logging.getLogger(__name__)

# Events linked in one short transaction.
SEAL_BATCH = 500
# A sealing pass starts at most this often. The chain is tamper-evident once sealed, a moment
# after commit; under load one pass then takes a few hundred requests' events, and its three
# statements are shared by all of them (issue 18's statements per command cycle).
SEAL_GATHER_SECONDS = 0.5


def seal_all(factory: sessionmaker[Session]) -> int:
    """Seal every committed unsealed event, in batches; returns how many were sealed."""
    total = 0
    while True:
        with transaction(factory) as session:
            sealed = seal_pending(session, SEAL_BATCH)
        total += sealed
        # A batch short of full took every event committed before it: one committed since
        # wakes the sealer again (or is the sweep's), so no pass is spent finding nothing.
        if sealed < SEAL_BATCH:
            return total


class AuditSealer:
    """One per session factory: wakes a background thread after commits that wrote events."""

    def __init__(self, factory: sessionmaker[Session], *, background: bool = True) -> None:
        # A short-lived process (a CLI command) seals in the committing thread: it may exit before
        # a background thread would run.
        self._factory = factory
        self._background = background
        self._worker = WakeWorker("hikeshi-audit-sealer", self._seal, gather=SEAL_GATHER_SECONDS)

    def listeners(self) -> list[tuple[str, Callable[..., None]]]:
        return [("after_commit", self._after_commit)]

    def attach(self) -> AuditSealer:
        event.listen(self._factory, "after_commit", self._after_commit)
        return self

    def detach(self, timeout: float = 10.0) -> bool:
        """Stop listening, then finish the pass already woken for and end the thread: a pass
        still gathering would otherwise seal what later commits elsewhere wrote."""
        event.remove(self._factory, "after_commit", self._after_commit)
        return self.close(timeout)

    def _after_commit(self, session: Session) -> None:
        # A flag left by a rolled-back transaction only costs one empty sealing pass.
        if not session.info.pop(UNSEALED_WRITTEN, False):
            return
        if self._background:
            self.wake()
            return
        self._seal()

    def wake(self) -> None:
        self._worker.wake()

    def close(self, timeout: float = 10.0) -> bool:
        """Seal what the commits so far wrote, then end the thread."""
        return self._worker.close(timeout)

    def _seal(self) -> None:
        try:
            seal_all(self._factory)
        except Exception:  # the events stay unsealed, not lost: the next wake-up or the sweep seals them
            log.exception("sealing audit events failed; the next wake-up or the scheduler's sweep retries")
