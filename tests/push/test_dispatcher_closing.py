"""A push that sets out while its dispatcher closes (a SIGHUP reload) finds the executor gone. Its
wake-up is still in the outbox for the next drain, so that is an info line, not an error with a
traceback (the 30-minute fault soak logged one at every reload); a RuntimeError while the
dispatcher runs is still an error."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mdm.ground.push.dispatcher import PushDispatcher


class _LateDispatcher(PushDispatcher):
    async def _push(self, device_ids: list[int]) -> list[Any]:
        raise RuntimeError("cannot schedule new futures after shutdown")


def test_a_push_that_meets_the_closing_executor_is_left_to_the_outbox(
    session_factory: Any, settings: Any, caplog: Any
) -> None:
    dispatcher = _LateDispatcher(session_factory, settings)
    caplog.set_level(logging.INFO, logger="mdm.ground.push.dispatcher")
    assert asyncio.run(dispatcher._run([7])) == []  # closing: no loop any more
    [record] = [r for r in caplog.records if r.name == "mdm.ground.push.dispatcher"]
    assert record.levelno == logging.INFO and "outbox" in record.getMessage() and record.exc_info is None

    caplog.clear()
    dispatcher._loop = asyncio.new_event_loop()  # running: the same error is a real failure
    try:
        assert asyncio.run(dispatcher._run([7])) == []
    finally:
        dispatcher._loop.close()
    [record] = [r for r in caplog.records if r.name == "mdm.ground.push.dispatcher"]
    assert record.levelno == logging.ERROR and record.exc_info is not None
