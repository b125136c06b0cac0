"""Sends APNs pushes after commit, on a long-lived event loop that keeps one HTTP/2 connection.

A push only wakes the device; the command itself waits in the database. Whatever the outcome,
nothing is rolled back: a device that could not be woken gets its commands at its next check-in.
"""

from __future__ import annotations

import asyncio
import logging
import threading
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

log = logging.getLogger(__name__)


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

    def install(self) -> None:
        """Hand every committed session's push requests to this dispatcher."""
        event.listen(self._factory, "after_commit", self._after_commit)
        event.listen(self._factory, "after_soft_rollback", self._after_rollback)

    def _after_commit(self, session: Session) -> None:
        device_ids = take_pending_pushes(session)
        if device_ids:
            self.submit(device_ids)

    def _after_rollback(self, session: Session, _previous: object) -> None:
        session.info.pop(PENDING_PUSHES, None)

    # -- public ------------------------------------------------------------------------------

    def submit(self, device_ids: Iterable[int]) -> Future[list[PushOutcome]] | None:
        ids = sorted(set(device_ids))
        if not ids or not self._settings.push_enabled:
            return None
        loop = self._ensure_loop()
        with self._idle:
            self._inflight += 1
        return asyncio.run_coroutine_threadsafe(self._run(ids), loop)

    def push_now(self, device_ids: Iterable[int], timeout: float = 60.0) -> list[PushOutcome]:
        future = self.submit(device_ids)
        return [] if future is None else future.result(timeout)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout)

    def close(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if self._retry_handle is not None:
            loop.call_soon_threadsafe(self._retry_handle.cancel)
        if self._client is not None:
            asyncio.run_coroutine_threadsafe(self._client.aclose(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None
        self._client = None

    # -- internals -----------------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="hikeshi-push", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

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
        if not self.breaker.allows(loop.time()):
            self._defer(device_ids)
            return []
        loaded = await asyncio.to_thread(self._load, device_ids)
        if loaded is None:
            return []
        credentials, targets = loaded
        if not targets:
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

    def _load(self, device_ids: list[int]) -> tuple[PushCredentials, list[_Target]] | None:
        with self._factory() as session:
            cert = active_push_certificate(session)
            if cert is None:
                log.warning(
                    "no push certificate installed; devices %s will get commands at check-in", device_ids
                )
                return None
            credentials = PushCredentials(
                topic=cert.topic,
                cert_pem=cert.cert_pem.encode(),
                key_pem=decrypt_key(cert, self._settings.secret_key),
            )
            rows = session.execute(
                select(Device.id, Device.push_token, Device.push_magic).where(
                    Device.id.in_(device_ids),
                    Device.push_token.is_not(None),
                    Device.push_magic.is_not(None),
                    Device.token_stale_at.is_(None),
                )
            ).all()
            return credentials, [_Target(r.id, r.push_token, r.push_magic) for r in rows]

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
