"""Right after a commit that queued commands for AMAPI-mode tablets, send them (Google's
devices.issueCommand / devices.delete) on a background thread of this process; the scheduler's
`amapi_send` sweep sends what a killed process left (the AMAPI_SEND outbox rows, written in the
queueing commit: mdm.services.amapi.commands)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from commands.context import CommandContext
from mdm.ground.config import Settings
from mdm.services.amapi.client_factory import amapi_client_for
from mdm.services.amapi.commands import ask_before_commit, send_due, take_send_now
from mdm.services.amapi.sending import AmapiCaller

log = logging.getLogger(__name__)

ClientFactory = Callable[[], AmapiCaller | None]


def client_from_settings(factory: sessionmaker[Session], settings: Settings) -> AmapiCaller | None:
    """The enterprise's client from its stored service account (None while none is stored)."""
    with factory() as session:
        return amapi_client_for(session, settings)


class AmapiSender:
    def __init__(
        self,
        factory: sessionmaker[Session],
        context: CommandContext,
        client_factory: ClientFactory,
        *,
        background: bool = True,
    ) -> None:
        self.factory = factory
        self.context = context
        self.client_factory = client_factory
        self.background = background
        self._threads: list[threading.Thread] = []
        self._guard = threading.Lock()

    def listeners(self) -> list[tuple[str, Callable[..., Any]]]:
        return [("before_commit", ask_before_commit), ("after_commit", self.after_commit)]

    def after_commit(self, session: Session) -> None:
        if session.in_nested_transaction():
            return
        device_ids = take_send_now(session)
        if not device_ids:
            return
        if not self.background:
            self.send(device_ids)
            return
        thread = threading.Thread(
            target=self.send, args=(device_ids,), name="hikeshi-amapi-send", daemon=True
        )
        with self._guard:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def send(self, device_ids: set[int]) -> None:
        try:
            client = self.client_factory()
            if client is None:
                return  # no enterprise bound: the rows wait for the sweep
            try:
                send_due(self.factory, client, self.context, device_ids=device_ids)
            finally:
                close = getattr(client, "close", None)
                if close is not None:
                    close()
        except Exception:  # the outbox rows stay; the scheduler's sweep sends them
            log.exception("sending AMAPI commands after commit failed; the sweep retries")

    def wait_idle(self, timeout: float = 10.0) -> None:
        with self._guard:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
