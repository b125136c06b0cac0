"""Wakes devices after commit: APNs for Apple devices, on a long-lived event loop that keeps one
HTTP/2 connection; the wake-up board and MQTT for Android agents.

A push only wakes the device; the command itself waits in the database. Whatever the outcome,
nothing is rolled back: a device that could not be woken gets its commands at its next check-in.

Every committed push request first signals the in-process wake-up board (mdm.push.wakeups), for
every device whatever its platform, so an agent's long poll answers at once; then Android devices
get an MQTT wake-up (when a broker is configured) and Apple devices an APNs push. The two paths are
independent: an APNs outage (breaker open) never holds back an Android wake-up, and MQTT publishes
never wait for the network.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass

from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, sessionmaker

from mdm import clock
from mdm.audit import SYSTEM, record_event
from mdm.config import Settings
from mdm.db import transaction
from mdm.health import mark_health
from mdm.models import Command, CommandStatus, Device, PushAttempt
from mdm.push import PENDING_PUSHES, take_pending_pushes
from mdm.push.apns import ApnsClient, PushCredentials, PushOutcome
from mdm.push.breaker import CircuitBreaker
from mdm.push.certificates import active_push_certificate, decrypt_key
from mdm.push.mqtt import MqttWaker
from mdm.push.wakeups import signal_wakeups

log = logging.getLogger(__name__)

ANDROID = "android"  # Device.platform of agents woken over MQTT rather than APNs
# On close, pushes already under way get this long to finish before they are cancelled.
CLOSE_GRACE_SECONDS = 3.0


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
        self._closing: set[asyncio.Future[object]] = set()
        self.breaker = CircuitBreaker()
        # Devices whose wake-up waits for the breaker (or a retry after a failed batch).
        self._deferred: set[int] = set()
        self._retry_handle: asyncio.TimerHandle | None = None
        self._apns_healthy: bool | None = None
        # None unless a broker is configured: then nothing ever opens a connection.
        self._mqtt = MqttWaker.from_settings(settings, session_factory)

    def install(self) -> None:
        """Hand every committed session's push requests to this dispatcher."""
        # SQLAlchemy keeps these listeners for the factory's Session class in a class-level
        # registry; holding the dispatcher only weakly there lets an app that is gone (tests
        # build hundreds) be freed with its engine and pool, instead of living for ever.
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

        event.listen(self._factory, "after_commit", after_commit)
        event.listen(self._factory, "after_soft_rollback", after_soft_rollback)

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
        if self._deferred:
            log.info("closing: devices %s get their commands at check-in", sorted(self._deferred))
            self._deferred = set()
        current = asyncio.current_task()
        # Tasks may start others (closing a replaced client); go round until none is left.
        for _ in range(3):
            pending = [task for task in asyncio.all_tasks() if task is not current]
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
        except Exception:
            log.exception("push to devices %s failed", device_ids)
            return []
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    async def _push(self, device_ids: list[int]) -> list[PushOutcome]:
        loop = asyncio.get_running_loop()
        apns_allowed = self.breaker.allows(loop.time())
        credentials, targets, android_ids = await asyncio.to_thread(self._load, device_ids, apns_allowed)
        if android_ids and self._mqtt is not None:
            # Hands the wake-ups to the MQTT client's own thread; returns without network I/O.
            try:
                self._mqtt.publish_wakeups(android_ids)
            except Exception:  # never at the expense of the Apple devices of this batch
                log.exception("MQTT wake-up of devices %s failed", android_ids)
        if not targets:
            return []
        if not apns_allowed:
            self._defer([t.device_id for t in targets])
            return []
        if credentials is None:
            log.warning(
                "no push certificate installed; devices %s will get commands at check-in",
                [t.device_id for t in targets],
            )
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
        if unreachable:
            self._defer(unreachable)
        await asyncio.to_thread(self._record, targets, outcomes, health)
        return outcomes

    def _defer(self, device_ids: Iterable[int]) -> None:
        """Try these devices again when the breaker allows (at least one cooldown from now)."""
        self._deferred.update(device_ids)
        if self._retry_handle is None and self._loop is not None:
            delay = max(self.breaker.retry_in(self._loop.time()), self.breaker.base_cooldown)
            self._retry_handle = self._loop.call_later(delay, self._retry_deferred)

    def _retry_deferred(self) -> None:
        self._retry_handle = None
        ids, self._deferred = self._deferred, set()
        if ids:
            with self._idle:
                self._inflight += 1
            task = asyncio.ensure_future(self._run(sorted(ids)))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _load(
        self, device_ids: list[int], with_credentials: bool
    ) -> tuple[PushCredentials | None, list[_Target], list[int]]:
        """The push certificate (when wanted and there are APNs targets), the Apple devices APNs
        can reach, and the Android devices to wake over MQTT."""
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
            credentials = None
            if targets and with_credentials:
                cert = active_push_certificate(session)
                if cert is not None:
                    credentials = PushCredentials(
                        topic=cert.topic,
                        cert_pem=cert.cert_pem.encode(),
                        key_pem=decrypt_key(cert, self._settings.secret_key),
                    )
            return credentials, targets, android

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
            )
            self._client_key = key
            if old is not None:
                # A renewed certificate: close the old connection once its pushes finish.
                task = asyncio.ensure_future(old.aclose())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        return self._client

    def _record(
        self, targets: list[_Target], outcomes: list[PushOutcome], health: tuple[bool, str] | None = None
    ) -> None:
        now = clock.now()
        with transaction(self._factory) as session:
            if health is not None and health[0] != self._apns_healthy:
                mark_health(session, "apns", health[0], health[1])
                self._apns_healthy = health[0]
            certificate_refused: str | None = None
            for target, outcome in zip(targets, outcomes, strict=True):
                session.add(
                    PushAttempt(
                        device_id=target.device_id,
                        attempt=outcome.attempts,
                        status_code=outcome.status,
                        reason=(outcome.reason or None) and outcome.reason[:255],
                        apns_id=outcome.apns_id,
                        attempted_at=now,
                    )
                )
                device = session.get(Device, target.device_id)
                if device is None:
                    continue
                if outcome.delivered:
                    device.push_error = None
                    session.execute(
                        update(Command)
                        .where(
                            Command.device_id == device.id,
                            Command.status.in_(CommandStatus.PENDING),
                            Command.pushed_at.is_(None),
                        )
                        .values(pushed_at=now)
                        .execution_options(synchronize_session=False)
                    )
                    continue
                device.push_error = _error_label(outcome)
                device.push_error_at = now
                if outcome.stale_token:
                    device.token_stale_at = now
                if outcome.certificate_rejected:
                    certificate_refused = outcome.reason or "403"
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
            elif any(o.delivered for o in outcomes):
                cert = active_push_certificate(session)
                if cert is not None and cert.last_error:
                    cert.last_error = None


def _apns_unreachable(outcome: PushOutcome) -> bool:
    """APNs itself failed (no answer, throttled, server error), as opposed to refusing a token."""
    return outcome.status is None or outcome.status == 429 or outcome.status >= 500


def _error_label(outcome: PushOutcome) -> str:
    if outcome.status is None:
        return "no answer from APNs"
    return f"{outcome.status} {outcome.reason or ''}".strip()[:64]
