"""Readiness changes to the webhooks, signed exactly like the alert webhooks (mdm.services.alerts.signing)
and posted with the same client (mdm.services.alerts.webhooks.post_delivery).

Each change is queued for every enabled webhook in the transaction that records it. Delivery is
tried right after that transaction commits (so a dispatch system hears within a second), and by
the scheduler's readiness job for retries with backoff. A delivery is leased before it is posted,
so two app nodes never post the same one at the same time. The body is the event's payload with
its `event_id`: the receiver sees the same ids as the stream and the poller.
"""

from __future__ import annotations

import logging
import queue
import threading
import weakref
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground import clock
from mdm.ground.config import Settings
from mdm.ground.db import is_postgres, read_mostly, transaction
from mdm.ground.models import (
    DeliveryStatus,
    OrgUnit,
    OrgUnitKind,
    ReadinessDelivery,
    UnitReadinessState,
    Webhook,
)
from mdm.ground.secretbox import unseal
from mdm.services.alerts.signing import SIGNATURE_HEADER, sign_body
from mdm.services.alerts.webhooks import (
    SEALED_AS,
    AttemptOutcome,
    OutgoingDelivery,
    advance_delivery,
    post_delivery,
)
from mdm.services.continuity.readiness import (
    EVENT_KIND,
    EVENTS_WRITTEN_KEY,
    TABLETS_PER_PART,
    recompute,
    tablet_bounded_parts,
    units_with_tablets,
)

log = logging.getLogger(__name__)

# Long enough for one POST with its timeout; a node that dies mid-post leaves it to be retried.
LEASE = timedelta(seconds=120)


def due_deliveries(session: Session, *, secret_key: str, limit: int = 100) -> list[OutgoingDelivery]:
    """Lease and return what is due, oldest event first."""
    now = clock.now()
    stmt = (
        select(ReadinessDelivery)
        .join(Webhook, Webhook.id == ReadinessDelivery.webhook_id)
        .where(
            ReadinessDelivery.status == DeliveryStatus.PENDING,
            ReadinessDelivery.next_attempt_at <= now,
            Webhook.enabled.is_(True),
        )
        .order_by(ReadinessDelivery.event_id, ReadinessDelivery.id)
        .limit(limit)
    )
    if is_postgres(session):
        stmt = stmt.with_for_update(of=ReadinessDelivery, skip_locked=True)
    outgoing = []
    secrets: dict[int, bytes] = {}
    for delivery in session.scalars(stmt):
        webhook = session.get(Webhook, delivery.webhook_id)
        assert webhook is not None
        if webhook.id not in secrets:
            secrets[webhook.id] = unseal(secret_key, SEALED_AS, webhook.secret_encrypted)
        delivery.next_attempt_at = now + LEASE
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Hikeshi-MDM-Webhook/1",
            SIGNATURE_HEADER: sign_body(secrets[webhook.id], delivery.body),
            "X-Hikeshi-Event": EVENT_KIND,
            "X-Hikeshi-Delivery": f"readiness-{delivery.id}",
            "X-Hikeshi-Event-Id": str(delivery.event_id),
        }
        outgoing.append(OutgoingDelivery(delivery.id, webhook.url, delivery.body, headers))
    return outgoing


def record_attempt(
    session: Session, delivery_id: int, outcome: AttemptOutcome, *, max_attempts: int
) -> ReadinessDelivery | None:
    delivery = session.get(ReadinessDelivery, delivery_id)
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return delivery
    delivery.last_status_code = outcome.status_code
    advance_delivery(delivery, outcome, max_attempts=max_attempts, now=clock.now())
    return delivery


def anything_due(factory: sessionmaker[Session]) -> bool:
    """A read that takes no write lock: most commits of a busy server have nothing to deliver."""
    engine = factory.kw["bind"]
    with Session(read_mostly(engine)) as session:
        found = session.scalar(
            select(ReadinessDelivery.id)
            .where(
                ReadinessDelivery.status == DeliveryStatus.PENDING,
                ReadinessDelivery.next_attempt_at <= clock.now(),
            )
            .limit(1)
        )
    return found is not None


def deliver_due(factory: sessionmaker[Session], settings: Settings) -> dict[str, int]:
    """Post what is due; no transaction stays open while a webhook answers."""
    if not anything_due(factory):
        return {"attempted": 0, "delivered": 0}
    with transaction(factory) as session:
        outgoing = due_deliveries(session, secret_key=settings.secret_key)
    delivered = 0
    for item in outgoing:
        outcome = post_delivery(
            item, timeout=settings.webhook_timeout_seconds, allow_networks=settings.webhook_allow_networks
        )
        try:
            with transaction(factory) as session:
                record_attempt(session, item.delivery_id, outcome, max_attempts=settings.webhook_max_attempts)
        except Exception:  # one delivery that cannot be recorded must not stop the others
            log.exception("recording readiness delivery %s failed", item.delivery_id)
        delivered += outcome.ok
    return {"attempted": len(outgoing), "delivered": delivered}


class JobContextLike(Protocol):
    # Read-only, as the scheduler's JobContext (a frozen dataclass) has them.
    @property
    def factory(self) -> sessionmaker[Session]: ...

    @property
    def settings(self) -> Settings: ...

    def should_stop(self) -> bool: ...


# Units per transaction of the scheduled recompute: the memory of a thousand units' tablets, not
# of a prefecture's (one pass over 14,000 units and 100,000 tablets held the scheduler at 349 MB).
UNITS_PER_TRANSACTION = 1000


def readiness_job(ctx: JobContextLike) -> dict[str, Any]:
    """Scheduler job: recompute every unit (time passes: "seen within N minutes"), then deliver."""
    changes, stopped = recompute_every_unit(ctx.factory, should_stop=ctx.should_stop)
    if stopped:
        return {"changes": changes, "stopped": True}
    return {"changes": changes, **deliver_due(ctx.factory, ctx.settings)}


def recompute_every_unit(
    factory: sessionmaker[Session],
    *,
    per_transaction: int = UNITS_PER_TRANSACTION,
    tablets_per_transaction: int = TABLETS_PER_PART,
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[int, bool]:
    """Recompute every unit, in transactions of at most `per_transaction` units (by id) holding
    at most `tablets_per_transaction` tablets (a bigger unit alone), then drop the rows of units
    that are no longer units; returns (changes recorded, whether told to stop).
    Each unit is computed from one consistent read with the spares of every station, as a
    recompute of named units is (mdm.services.continuity.hooks)."""
    changes = 0
    after = 0
    while True:
        if should_stop():
            return changes, True
        with transaction(factory) as session:
            following = units_with_tablets().where(OrgUnit.id > after).limit(per_transaction)
            counted = session.execute(following).tuples().all()
            ids = next(tablet_bounded_parts(counted, tablets_per_transaction), [])
            if not ids:
                break
            changes += len(recompute(session, set(ids)))
        after = ids[-1]
    units = select(OrgUnit.id).where(OrgUnit.kind == OrgUnitKind.UNIT)
    while True:
        with transaction(factory) as session:
            gone = set(
                session.scalars(
                    select(UnitReadinessState.org_unit_id)
                    .where(UnitReadinessState.org_unit_id.not_in(units.scalar_subquery()))
                    .limit(per_transaction)
                )
            )
            if not gone:
                return changes, False
            recompute(session, gone)  # a unit deleted or made a station: its row goes


# -- right after commit ---------------------------------------------------------------------------


class ReadinessNotifier:
    """Delivers one application's readiness webhooks right after a transaction of its sessions
    recorded a change. The wiring (mdm.roots.wiring) attaches `listeners()` to the application's
    session factory; the posting happens on a worker thread, never in the committing request."""

    def __init__(self, factory: sessionmaker[Session], settings: Settings) -> None:
        self.factory = factory
        self.settings = settings
        self._state = threading.Condition()
        self._queued = False
        self._delivering = False

    def listeners(self) -> list[tuple[str, Callable[..., None]]]:
        """(event, listener) for the application's session factory. SQLAlchemy keeps listeners
        with the factory's Session class for as long as that class lives; holding the notifier
        only weakly there lets an application that is gone be freed (tests build hundreds)."""
        this = weakref.ref(self)

        def after_commit(session: Session) -> None:
            notifier = this()
            if notifier is not None:
                notifier.after_commit(session)

        return [("after_commit", after_commit), ("after_soft_rollback", forget_after_rollback)]

    def after_commit(self, session: Session) -> None:
        if session.in_nested_transaction():
            return  # a savepoint released: the events are not visible to others yet
        if session.info.pop(EVENTS_WRITTEN_KEY, False):
            with self._state:
                if self._queued:
                    return  # the delivery already waiting will post this change too
                self._queued = True
            _WORK.put(weakref.ref(self))
            _start_worker()

    def deliver(self) -> None:
        with self._state:
            self._queued = False
            self._delivering = True
        try:
            deliver_due(self.factory, self.settings)
        except Exception:
            log.exception("readiness webhook delivery failed; the scheduler retries")
        finally:
            with self._state:
                self._delivering = False
                self._state.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait for what the last commits asked for to be posted (a CLI command, before it exits)."""
        with self._state:
            return self._state.wait_for(lambda: not (self._queued or self._delivering), timeout)


def forget_after_rollback(session: Session, previous: Any) -> None:
    if not getattr(previous, "nested", False):
        session.info.pop(EVENTS_WRITTEN_KEY, None)


# Deliveries asked for by commits, of whichever application: one thread for the process, however
# many applications (tests build many); idle, it only waits.
_WORK: queue.SimpleQueue[weakref.ref[ReadinessNotifier]] = queue.SimpleQueue()
_start_lock = threading.Lock()
_worker: threading.Thread | None = None


def _start_worker() -> None:
    global _worker
    with _start_lock:
        if _worker is None or not _worker.is_alive():
            _worker = threading.Thread(target=_work, name="hikeshi-readiness-webhooks", daemon=True)
            _worker.start()


def _work() -> None:
    while True:
        notifier = _WORK.get()()
        if notifier is not None:
            notifier.deliver()
