"""What the scheduler hands each job: its session factory, settings, fencing holder, and the
commands' context its wiring built (passed on to whatever queues a command)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from commands.context import NO_CONTEXT, CommandContext
from mdm.ground.config import Settings
from mdm.ground.push.dispatcher import PushDispatcher
from mdm.roots.amapi_sender import ClientFactory


@dataclass(frozen=True)
class JobContext:
    # Fenced while a scheduler runs (mdm.roots.scheduler.fencing): its commits fail once it lost the lock.
    factory: sessionmaker[Session]
    settings: Settings
    holder: str
    dispatcher: PushDispatcher | None = None
    commands: CommandContext = NO_CONTEXT
    # Set on SIGTERM: a fleet-wide job checks it between its pages and between the devices of a
    # page, and stops there.
    stopping: threading.Event | None = None
    # How the AMAPI jobs reach Google (None, or a factory answering None: no enterprise bound).
    amapi_client: ClientFactory | None = None

    def should_stop(self) -> bool:
        return self.stopping is not None and self.stopping.is_set()
