"""Seals audit events into the chain right after the transaction that wrote them commits.

The sealer listens to one session factory: a commit that wrote unsealed events wakes a thread
of this process, which seals everything committed and unsealed in short transactions of its own
(mdm.ground.audit.seal_pending). A process that dies before sealing leaves its events to the next
wake-up anywhere, or to the scheduler's sweep (`audit_seal`), so nothing stays unsealed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground.audit import UNSEALED_WRITTEN, seal_pending
from mdm.ground.db import transaction

log = logging.getLogger(__name__)


def seal_all(factory: sessionmaker[Session]) -> int:
    """Seal every committed unsealed event, in batches; returns how many were sealed."""
    total = 0
    while True:
        with transaction(factory) as session:
            sealed = seal_pending(session)
        total += sealed
        if not sealed:
            return total


class AuditSealer:
    """One per session factory: wakes a background thread after commits that wrote events."""

    def __init__(self, factory: sessionmaker[Session], *, background: bool = True) -> None:
        # A short-lived process (a CLI command) seals in the committing thread: it may exit before
        # a background thread would run.
        self._factory = factory
        self._background = background
        self._wake = threading.Event()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def listeners(self) -> list[tuple[str, Callable[..., None]]]:
        return [("after_commit", self._after_commit)]

    def attach(self) -> AuditSealer:
        event.listen(self._factory, "after_commit", self._after_commit)
        return self

    def detach(self) -> None:
        event.remove(self._factory, "after_commit", self._after_commit)

    def _after_commit(self, session: Session) -> None:
        # A flag left by a rolled-back transaction only costs one empty sealing pass.
        if not session.info.pop(UNSEALED_WRITTEN, False):
            return
        if self._background:
            self.wake()
            return
        try:
            seal_all(self._factory)
        except Exception:
            log.exception("sealing audit events failed; the server's sealer or sweep seals them later")

    def wake(self) -> None:
        with self._guard:
            # A forked worker inherits the object but not the thread: start one per process.
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._wake = threading.Event()
                self._thread = threading.Thread(target=self._run, name="hikeshi-audit-sealer", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        wake = self._wake
        while True:
            wake.wait()
            wake.clear()
            try:
                seal_all(self._factory)
            except Exception:  # the sweep and the next wake-up retry; the events stay unsealed, not lost
                log.exception("sealing audit events failed; they stay unsealed until the next attempt")
