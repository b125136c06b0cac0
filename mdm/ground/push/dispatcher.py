"""Wakes devices after commit: APNs for Apple devices, on a long-lived event loop that keeps a small
pool of HTTP/2 connections (mdm.ground.push.apns; one per certificate while one is enough); the
wake-up board and MQTT for Android agents.

A push only wakes the device; the command itself waits in the database. Whatever the outcome,
nothing is rolled back. The wake-up request is a row of the outbox (mdm.ground.push.outbox), written with
the command: a push that fails or never starts (APNs down, the worker killed or reloaded) stays
due there with its backoff, and the next drain (this process's retry timer, or the scheduler's
push_drain job on any node) sends it. Nothing waits in memory only.

Every committed push request first signals the in-process wake-up board (mdm.ground.push.wakeups), for
every device whatever its platform, so an agent's long poll answers at once; then Android devices
get an MQTT wake-up (when a broker is configured) and Apple devices an APNs push. The two paths are
independent: an APNs outage (breaker open) never holds back an Android wake-up, and MQTT publishes
never wait for the network.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from mdm.ground import clock
from mdm.ground.audit import SYSTEM, record_event
from mdm.ground.config import Settings
from mdm.ground.db import transaction
from mdm.ground.health import record_apns_health
from mdm.ground.models import Command, CommandStatus, Device, OutboxTopic, PushAttempt
from mdm.ground.push import PENDING_PUSHES, outbox, take_pending_pushes
from mdm.ground.push.apns import ApnsClient, PushCredentials, PushOutcome
from mdm.ground.push.breaker import CircuitBreaker
from mdm.ground.push.certificates import active_push_certificate, decrypt_key
from mdm.ground.push.mqtt import MqttWaker
from mdm.ground.push.wakeups import signal_wakeups

log = logging.getLogger(__name__)

ANDROID = "android"  # Device.platform of agents woken over MQTT rather than APNs
# On close, pushes already under way get this long to finish before they are cancelled.
CLOSE_GRACE_SECONDS = 3.0
# Outcomes are committed this many devices to a transaction (row locks held briefly).
RECORD_BATCH = 500
RECORD_ATTEMPTS = 4
# Without a push certificate nothing can be sent; look again after this long.
NO_CERTIFICATE_RETRY = timedelta(minutes=5)
# The retry timer never fires sooner than this (rows another drainer holds are due but locked).
MIN_DRAIN_DELAY = 0.5


@dataclass(frozen=True)
class _Target:
    device_id: int
    token: str
    push_magic: str


class PushDispatcher:
    def __init__(self, session_factory: sessionmaker[Session], settings: Settings) -> None:
        self._factory = session_factory
        self._settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._client: ApnsClient | None = None
        self._client_key: tuple[str, str] | None = None
        self._inflight = 0
        self._idle = threading.Condition()
        # Background tasks kept referenced until done (closing old clients, deferred retries).
        self._closing: set[asyncio.Future[Any]] = set()
        self.breaker = CircuitBreaker()
        self._retry_handle: asyncio.TimerHandle | None = None
        # None unless a broker is configured: then nothing ever opens a connection.
        self._mqtt = MqttWaker.from_settings(settings, session_factory)

    def listeners(self) -> list[tuple[str, Callable[..., None]]]:
        """(event, listener) that hand every committed session's push requests to this dispatcher.

        SQLAlchemy keeps listeners with the factory's Session class for as long as that class
        lives; holding the dispatcher only weakly there lets an app that is gone (tests build
        hundreds) be freed with its engine and pool, instead of living for ever."""
        on_commit = weakref.WeakMethod(self._after_commit)
        on_rollback = weakref.WeakMethod(self._after_rollback)

        def after_commit(session: Session) -> None:
            method = on_commit()
            if method is not None:
                method(session)

        def after_soft_rollback(session: Session, previous: object) -> None:
            method = on_rollback()
            if method is not None:
                method(session, previous)

        return [("after_commit", after_commit), ("after_soft_rollback", after_soft_rollback)]

    def install(self, factory: sessionmaker[Session] | None = None) -> None:
        """Attach `listeners()` to `factory` (by default the dispatcher's own): for a factory the
        application's wiring (mdm.roots.wiring) does not build, such as a test's."""
        target = self._factory if factory is None else factory
        for name, listener in self.listeners():
            event.listen(target, name, listener)

    def _after_commit(self, session: Session) -> None:
        device_ids = take_pending_pushes(session)
        if device_ids:
            # Long polls held in this process answer now; this costs no I/O, so it goes first.
            signal_wakeups(device_ids)
            self.submit(device_ids)

    def _after_rollback(self, session: Session, _previous: object) -> None:
        session.info.pop(PENDING_PUSHES, None)

    # -- public ------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the long-lived wake-up channels now (the MQTT connection, when a broker is set).

        Optional: they also open on first use. Returns at once; connecting happens in background.
        """
        if self._mqtt is not None and self._settings.push_enabled:
            self._mqtt.start()

    def submit(self, device_ids: Iterable[int]) -> Future[list[PushOutcome]] | None:
        """Wake these devices in the background; the future holds the APNs outcomes."""
        ids = sorted(set(device_ids))
        if not ids or not self._settings.push_enabled:
            return None
        with self._idle:
            self._inflight += 1
        # Scheduled under the start lock, so close() cannot stop this loop before the task exists.
        with self._start_lock:
            loop = self._ensure_loop()
            return asyncio.run_coroutine_threadsafe(self._run(ids), loop)

    def push_now(self, device_ids: Iterable[int], timeout: float = 60.0) -> list[PushOutcome]:
        future = self.submit(device_ids)
        return [] if future is None else future.result(timeout)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout)

    def close(self) -> None:
        """Let pushes under way finish (briefly), cancel the rest, stop the loop and the MQTT client.

        Every scheduled coroutine is run or cancelled before the loop stops, so none is left
        un-awaited. A later submit starts afresh.
        """
        with self._start_lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(CLOSE_GRACE_SECONDS + 10)
            except Exception:
                log.exception("push dispatcher did not shut down cleanly")
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(10)
                if not thread.is_alive():
                    loop.close()
        # After the loop: wake-ups its last batches handed over still get their short flush.
        if self._mqtt is not None:
            self._mqtt.close()
            self._mqtt = MqttWaker.from_settings(self._settings, self._factory)

    # -- internals -----------------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        """The running push loop, started on first use; the caller holds _start_lock."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="hikeshi-push", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    async def _shutdown(self) -> None:
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None
        current = asyncio.current_task()
        # Tasks may start others (closing a replaced client); go round until none is left.
        for _ in range(3):
            # The client's connection readers run until it closes (below), not pushes to wait for.
            readers = set(self._client.background_tasks()) if self._client is not None else set()
            pending = [task for task in asyncio.all_tasks() if task is not current and task not in readers]
            if not pending:
                break
            _done, late = await asyncio.wait(pending, timeout=CLOSE_GRACE_SECONDS)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._client is not None:
            client, self._client, self._client_key = self._client, None, None
            await client.aclose()
        await asyncio.get_running_loop().shutdown_default_executor()

    async def _run(self, device_ids: list[int]) -> list[PushOutcome]:
        try:
            return await self._push(device_ids)
        except RuntimeError:
            if self._loop is not None:
                log.exception("push to devices %s failed", device_ids)
                return []
            # Closing (a reload): the executor is gone under a push that set out late. Its wake-up
            # stays in the outbox, so the next drain anywhere sends it; no traceback for that.
            log.info("push dispatcher closing: devices %s left to the outbox's next drain", device_ids)
            return []
        except Exception:
            log.exception("push to devices %s failed", device_ids)
            return []
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    async def _push(self, device_ids: list[int]) -> list[PushOutcome]:
        """Wake these devices and settle their outbox rows (mdm.ground.push.outbox) with the outcome."""
        loop = asyncio.get_running_loop()
        started = clock.now()
        apns_allowed = self.breaker.allows(loop.time())
        credentials, targets, android_ids, unreachable_ids = await asyncio.to_thread(
            self._load, device_ids, apns_allowed
        )
        handed_over: list[int] = []
        if android_ids:
            # The long-poll board was signalled after commit; an agent polling elsewhere re-reads.
            handed_over = android_ids
            if self._mqtt is not None:
                # Hands the wake-ups to the MQTT client's own thread; returns without network I/O.
                try:
                    self._mqtt.publish_wakeups(android_ids)
                except Exception:  # never at the expense of the Apple devices of this batch
                    log.exception("MQTT wake-up of devices %s failed", android_ids)
                    handed_over = []
                    await asyncio.to_thread(
                        self._postpone, android_ids, "MQTT wake-up failed", self._retry_delay()
                    )
        if handed_over or unreachable_ids:
            await asyncio.to_thread(self._settle_without_apns, handed_over, unreachable_ids, started)
        if not targets:
            return []
        target_ids = [t.device_id for t in targets]
        if not apns_allowed:
            delay = self._retry_delay()
            await asyncio.to_thread(self._postpone, target_ids, "APNs circuit open", delay)
            self._schedule_drain(delay.total_seconds() + 0.05)
            return []
        if credentials is None:
            log.warning("no push certificate installed; devices %s will get commands at check-in", target_ids)
            await asyncio.to_thread(self._postpone, target_ids, "no push certificate", NO_CERTIFICATE_RETRY)
            return []
        client = self._client_for(credentials)
        outcomes = await client.push_many([(t.token, t.push_magic) for t in targets])
        unreachable = [t.device_id for t, o in zip(targets, outcomes, strict=True) if _apns_unreachable(o)]
        if unreachable and len(unreachable) == len(targets):
            self.breaker.record_failure(loop.time())
            health: tuple[bool, str] | None = (False, _error_label(outcomes[0]))
        else:
            self.breaker.record_success()
            health = (True, "pushes delivered")
        retry_delay = self._retry_delay()
        await asyncio.to_thread(self._record, targets, outcomes, started, retry_delay)
        # Health follows what was committed: written after the results, in its own short
        # transaction, and from the outcome, never from a copy in this process's memory.
        await asyncio.to_thread(self._record_health, health)
        if unreachable:
            self._schedule_drain(retry_delay.total_seconds() + 0.05)
        return outcomes

    def _retry_delay(self) -> timedelta:
        loop_time = self._loop.time() if self._loop is not None else 0.0
        seconds = max(self.breaker.retry_in(loop_time), self.breaker.base_cooldown)
        return timedelta(seconds=seconds * (1.0 + 0.2 * random.random()))

    def _schedule_drain(self, delay: float | None = None) -> None:
        """Drain again when the next row falls due: this process's fast path while it lives (the
        scheduler's push_outbox job drains the same rows anyway, should this process die)."""
        if self._loop is None:
            return
        if delay is None:
            delay = max(self.breaker.retry_in(self._loop.time()), self.breaker.base_cooldown)
        delay = min(max(delay, MIN_DRAIN_DELAY), self.breaker.max_cooldown)
        if self._retry_handle is not None:
            if self._retry_handle.when() <= self._loop.time() + delay:
                return
            self._retry_handle.cancel()
        self._retry_handle = self._loop.call_later(delay, self._retry_deferred)

    def _retry_deferred(self) -> None:
        self._retry_handle = None
        with self._idle:
            self._inflight += 1
        task = asyncio.ensure_future(self._drain_run())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _drain_run(self) -> list[PushOutcome]:
        try:
            return await self._drain()
        except Exception:
            log.exception("draining the push outbox failed")
            return []
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    async def _drain(self, limit: int = 1000) -> list[PushOutcome]:
        outcomes: list[PushOutcome] = []
        while True:
            ids = await asyncio.to_thread(self._claim, limit)
            if ids:
                outcomes.extend(await self._push(ids))
            if len(ids) < limit or not self.breaker.allows(asyncio.get_running_loop().time()):
                break
        next_due = await asyncio.to_thread(self._next_due)
        if next_due is not None:
            self._schedule_drain((next_due - clock.now()).total_seconds() + 0.05)
        return outcomes

    def _next_due(self) -> datetime | None:
        with self._factory() as session:
            return outbox.next_due(session, OutboxTopic.WAKE_DEVICE)

    def drain(self, timeout: float = 300.0) -> dict[str, int]:
        """Push every due outbox request (leftovers of dead workers, retries after an outage)."""
        if not self._settings.push_enabled:
            return {"pushed": 0, "delivered": 0}
        with self._idle:
            self._inflight += 1
        with self._start_lock:
            loop = self._ensure_loop()
            future = asyncio.run_coroutine_threadsafe(self._drain_run(), loop)
        outcomes = future.result(timeout)
        return {"pushed": len(outcomes), "delivered": sum(1 for o in outcomes if o.delivered)}

    def _claim(self, limit: int) -> list[int]:
        with transaction(self._factory) as session:
            return outbox.claim_due(session, OutboxTopic.WAKE_DEVICE, limit=limit)

    def _postpone(self, device_ids: list[int], error: str, delay: timedelta) -> None:
        with transaction(self._factory) as session:
            outbox.retry_later(session, OutboxTopic.WAKE_DEVICE, device_ids, error=error, delay=delay)

    def _settle_without_apns(self, handed_over: list[int], unreachable: list[int], started: datetime) -> None:
        with transaction(self._factory) as session:
            outbox.settle(session, OutboxTopic.WAKE_DEVICE, handed_over, requested_before=started)
            # No token (or a token APNs called stale): no push can reach it; it checks in by itself.
            outbox.drop(session, OutboxTopic.WAKE_DEVICE, unreachable)

    def _load(
        self, device_ids: list[int], with_credentials: bool
    ) -> tuple[PushCredentials | None, list[_Target], list[int], list[int]]:
        """The push certificate (when wanted and there are APNs targets), the Apple devices APNs
        can reach, the Android devices to wake over MQTT, and the devices nothing can wake."""
        with self._factory() as session:
            rows = session.execute(
                select(
                    Device.id, Device.platform, Device.push_token, Device.push_magic, Device.token_stale_at
                ).where(Device.id.in_(device_ids))
            ).all()
            android = [r.id for r in rows if r.platform == ANDROID]
            targets = [
                _Target(r.id, r.push_token, r.push_magic)
                for r in rows
                if r.platform != ANDROID and r.push_token and r.push_magic and r.token_stale_at is None
            ]
            reachable = set(android) | {t.device_id for t in targets}
            unreachable = sorted(set(device_ids) - reachable)
            credentials = None
            if targets and with_credentials:
                cert = active_push_certificate(session)
                if cert is not None:
                    credentials = PushCredentials(
                        topic=cert.topic,
                        cert_pem=cert.cert_pem.encode(),
                        key_pem=decrypt_key(cert, self._settings.secret_key),
                    )
            return credentials, targets, android, unreachable

    def _client_for(self, credentials: PushCredentials) -> ApnsClient:
        key = (self._settings.apns_url, credentials.cert_pem.decode())
        if self._client is None or self._client_key != key:
            old = self._client
            self._client = ApnsClient(
                self._settings.apns_url,
                credentials,
                ca_file=self._settings.apns_ca_file,
                timeout=self._settings.apns_timeout_seconds,
                expiration_seconds=self._settings.apns_expiration_seconds,
                max_concurrency=self._settings.apns_streams_per_connection,
                connections=self._settings.apns_connections,
            )
            self._client_key = key
            if old is not None:
                # A renewed certificate: close the old connection once its pushes finish.
                task = asyncio.ensure_future(old.aclose())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        return self._client

    def _record_health(self, health: tuple[bool, str] | None) -> None:
        if health is None:
            return
        with transaction(self._factory) as session:
            record_apns_health(session, health[0], health[1])

    def _record(
        self, targets: list[_Target], outcomes: list[PushOutcome], started: datetime, retry_delay: timedelta
    ) -> None:
        """Commit the outcomes, a batch at a time, retrying a batch a deadlock aborted."""
        pairs = sorted(zip(targets, outcomes, strict=True), key=lambda pair: pair[0].device_id)
        for first in range(0, len(pairs), RECORD_BATCH):
            batch = pairs[first : first + RECORD_BATCH]
            for attempt in range(1, RECORD_ATTEMPTS + 1):
                try:
                    with transaction(self._factory) as session:
                        self._record_batch(session, batch, started, retry_delay)
                    break
                except DBAPIError as exc:
                    if attempt == RECORD_ATTEMPTS or not _is_lock_conflict(exc):
                        raise
                    log.warning("recording pushes: %s; retrying (attempt %d)", exc.orig, attempt + 1)

    def _record_batch(
        self,
        session: Session,
        batch: list[tuple[_Target, PushOutcome]],
        started: datetime,
        retry_delay: timedelta,
    ) -> None:
        """Record a batch of outcomes in a number of statements that does not grow with the batch:
        one INSERT of every attempt, then one UPDATE per kind of outcome (devices, commands, outbox)."""
        now = clock.now()
        ids = [target.device_id for target, _ in batch]
        # The lock order of a check-in (its device row, then that device's commands), taken for
        # every device of the batch in id order up front, so neither can wait for the other in a
        # cycle. NO KEY UPDATE leaves inserts that reference a device (commands, results) free.
        present = set(
            session.scalars(
                select(Device.id)
                .where(Device.id.in_(ids))
                .order_by(Device.id)
                .with_for_update(key_share=True)
            )
        )
        reached_since = _reached_since(session, [t.device_id for t, o in batch if not o.delivered], started)
        delivered: list[int] = []
        hopeless: list[int] = []
        retry: dict[str, list[int]] = {}  # error label -> devices whose push is worth another try
        failed: dict[tuple[str, bool], list[int]] = {}  # (error label, token stale) -> devices
        certificate_refused: str | None = None
        for target, outcome in batch:
            device_id = target.device_id
            if device_id not in present:
                hopeless.append(device_id)
            elif outcome.delivered:
                delivered.append(device_id)
            elif device_id in reached_since:
                # Another worker's push reached this device after ours set out: our failure is
                # older news than its success and must not mark the device unreachable.
                continue
            else:
                label = _error_label(outcome)
                failed.setdefault((label, outcome.stale_token), []).append(device_id)
                if outcome.certificate_rejected:
                    certificate_refused = outcome.reason or "403"
                if _apns_unreachable(outcome) or outcome.certificate_rejected:
                    retry.setdefault(label, []).append(device_id)
                else:
                    hopeless.append(device_id)  # a refused token: only the device can mend it
        attempts = [
            {
                "device_id": target.device_id,
                "attempt": outcome.attempts,
                "status_code": outcome.status,
                "reason": (outcome.reason or None) and outcome.reason[:255],
                "apns_id": outcome.apns_id,
                "attempted_at": now,
            }
            for target, outcome in batch
            if target.device_id in present  # a device deleted meanwhile keeps no history
        ]
        if attempts:
            # render_nulls: one statement for every row; by default the ORM groups the rows by
            # which columns are None (a delivered push has no reason), one INSERT per group run.
            session.execute(insert(PushAttempt).execution_options(render_nulls=True), attempts)
        if delivered:
            session.execute(
                update(Device)
                .where(Device.id.in_(delivered), Device.push_error.is_not(None))
                .values(push_error=None)
                .execution_options(synchronize_session=False)
            )
            session.execute(
                update(Command)
                .where(
                    Command.device_id.in_(delivered),
                    Command.status.in_(CommandStatus.PENDING),
                    Command.pushed_at.is_(None),
                )
                .values(pushed_at=now)
                .execution_options(synchronize_session=False)
            )
        for (label, stale), device_ids in failed.items():
            values: dict[str, Any] = {"push_error": label, "push_error_at": now}
            if stale:
                values["token_stale_at"] = now
            session.execute(
                update(Device)
                .where(Device.id.in_(device_ids))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        outbox.settle(session, OutboxTopic.WAKE_DEVICE, delivered, requested_before=started)
        outbox.drop(session, OutboxTopic.WAKE_DEVICE, hopeless)
        for error, device_ids in retry.items():
            outbox.retry_later(session, OutboxTopic.WAKE_DEVICE, device_ids, error=error, delay=retry_delay)
        if certificate_refused is not None:
            cert = active_push_certificate(session)
            if cert is not None:
                cert.last_error = f"APNs refused the push certificate: {certificate_refused}"[:255]
                cert.last_error_at = now
                record_event(
                    session,
                    SYSTEM,
                    "push_certificate.rejected",
                    "push_certificate",
                    cert.id,
                    {"reason": certificate_refused},
                )
        elif delivered:
            cert = active_push_certificate(session)
            if cert is not None and cert.last_error:
                cert.last_error = None


def _reached_since(session: Session, device_ids: list[int], started: datetime) -> set[int]:
    """The devices among `device_ids` that a push recorded since `started` reached."""
    if not device_ids:
        return set()
    return set(
        session.scalars(
            select(PushAttempt.device_id).where(
                PushAttempt.device_id.in_(device_ids),
                PushAttempt.status_code == 200,
                PushAttempt.attempted_at >= started,
            )
        )
    )


def _is_lock_conflict(exc: DBAPIError) -> bool:
    """A deadlock or serialization failure (PostgreSQL), or a busy SQLite: safe to run again."""
    code = getattr(exc.orig, "sqlstate", None)
    return code in ("40P01", "40001") or "database is locked" in str(exc.orig)


def _apns_unreachable(outcome: PushOutcome) -> bool:
    """APNs itself failed (no answer, throttled, server error), as opposed to refusing a token."""
    return outcome.status is None or outcome.status == 429 or outcome.status >= 500


def _error_label(outcome: PushOutcome) -> str:
    if outcome.status is None:
        return "no answer from APNs"
    return f"{outcome.status} {outcome.reason or ''}".strip()[:64]
