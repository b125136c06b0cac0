"""Closing the dispatcher with work scheduled: every push coroutine is run or cancelled (no
"coroutine PushDispatcher._run was never awaited"), nothing stays in flight, and it restarts."""

from __future__ import annotations

import gc
import warnings

from mdm.ground.db import transaction
from mdm.ground.push.dispatcher import PushDispatcher
from tests.push.test_wakeups import make_android_device


def test_close_right_after_submitting_leaves_no_coroutine_unawaited(writer_factory, settings):
    with transaction(writer_factory) as s:
        ids = [make_android_device(s).id for _ in range(3)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(20):
            dispatcher = PushDispatcher(writer_factory, settings)
            assert dispatcher.submit(ids) is not None
            dispatcher.close()
            assert dispatcher.wait_idle(0)  # nothing left in flight
        del dispatcher
        gc.collect()
    unawaited = [w for w in caught if "never awaited" in str(w.message) or "destroyed" in str(w.message)]
    assert unawaited == []


def test_a_closed_dispatcher_starts_again_on_the_next_push(writer_factory, settings):
    with transaction(writer_factory) as s:
        device_id = make_android_device(s).id
    dispatcher = PushDispatcher(writer_factory, settings)
    try:
        dispatcher.push_now([device_id], timeout=10)
        dispatcher.close()
        dispatcher.close()  # twice is harmless
        assert dispatcher.push_now([device_id], timeout=10) == []  # Android: no APNs outcome
        assert dispatcher.wait_idle(10)
    finally:
        dispatcher.close()
