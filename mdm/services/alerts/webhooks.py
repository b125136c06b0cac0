"""Webhooks: configuring them, and delivering alerts with retries and backoff.

Delivery runs in three steps so no database transaction stays open during HTTP:
`due_deliveries` (read, with the signature computed), `post_delivery` (HTTP only), and
`record_attempt` (write the attempt and schedule the retry).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground import clock
from mdm.ground.audit import Actor, record_event
from mdm.ground.models import (
    Alert,
    DeliveryStatus,
    ReadinessDelivery,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
)
from mdm.ground.secretbox import seal, unseal
from mdm.services.alerts.destinations import DestinationRefused, allowed_networks, check_destination
from mdm.services.alerts.signing import SIGNATURE_HEADER, sign_body

SEALED_AS = "webhook-secret"  # the secretbox purpose of webhook signing keys
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=1)


class WebhookError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def create_webhook(
    session: Session,
    actor: Actor,
    name: str,
    url: str,
    *,
    secret_key: str,
    allow_networks: Sequence[str] = (),
) -> tuple[Webhook, str]:
    """Create a webhook; returns it and its signing secret, which is shown only this once.
    Its URL must reach a public address unless `allow_networks` (the administrator's
    HIKESHI_WEBHOOK_ALLOW_NETWORKS) allows it (mdm.services.alerts.destinations)."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise WebhookError("name", "required, at most 100 characters")
    try:
        parts = urlsplit(url or "")
    except ValueError as exc:
        raise WebhookError("url", "must be an http:// or https:// URL") from exc
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 1024:
        raise WebhookError("url", "must be an http:// or https:// URL")
    try:
        check_destination(url, allowed_networks(allow_networks))
    except DestinationRefused as exc:
        raise WebhookError("url", str(exc)) from exc
    if session.scalars(select(Webhook).where(Webhook.name == name)).first() is not None:
        raise WebhookError("name", "a webhook with this name exists")
    secret = secrets.token_urlsafe(32)
    webhook = Webhook(
        name=name,
        url=url,
        secret_encrypted=seal(secret_key, SEALED_AS, secret.encode()),
        enabled=True,
        created_at=clock.now(),
    )
    session.add(webhook)
    session.flush()
    record_event(session, actor, "webhook.created", "webhook", webhook.id, {"name": name, "url": url})
    return webhook, secret


def retry_delay(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, … doubling after each failed attempt, at most an hour."""
    return min(FIRST_RETRY * (2 ** max(attempts - 1, 0)), LONGEST_RETRY)


@dataclass(frozen=True)
class OutgoingDelivery:
    delivery_id: int
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class AttemptOutcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def due_deliveries(session: Session, *, secret_key: str, limit: int = 100) -> list[OutgoingDelivery]:
    now = clock.now()
    rows = session.execute(
        select(WebhookDelivery, Webhook, Alert.kind)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .join(Alert, Alert.id == WebhookDelivery.alert_id)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
            Webhook.enabled.is_(True),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    ).all()
    outgoing = []
    for delivery, webhook, kind in rows:
        secret = unseal(secret_key, SEALED_AS, webhook.secret_encrypted)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Hikeshi-MDM-Webhook/1",
            SIGNATURE_HEADER: sign_body(secret, delivery.body),
            "X-Hikeshi-Event": kind,
            "X-Hikeshi-Delivery": str(delivery.id),
        }
        outgoing.append(OutgoingDelivery(delivery.id, webhook.url, delivery.body, headers))
    return outgoing


def post_delivery(
    outgoing: OutgoingDelivery, *, timeout: float, allow_networks: Sequence[str] = ()
) -> AttemptOutcome:
    """POST one delivery to the address its name resolves to now, checked again here (a name may
    have been re-pointed at an internal address since the webhook was created)."""
    started = time.monotonic()
    try:
        destination = check_destination(outgoing.url, allowed_networks(allow_networks))
    except DestinationRefused as exc:
        return AttemptOutcome(None, f"refused: {exc}"[:512], _ms(started))
    extensions = {"sni_hostname": destination.host} if destination.scheme == "https" else {}
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            request = client.build_request(
                "POST",
                destination.pinned_url(outgoing.url),
                content=outgoing.body,
                headers={**outgoing.headers, "Host": destination.host_header},
                extensions=extensions,
            )
            response = client.send(request)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError, UnicodeError, OSError) as exc:
        # Every failure of this one delivery is its own outcome, recorded; the next still goes.
        return AttemptOutcome(None, f"{type(exc).__name__}: {exc}"[:512], _ms(started))
    error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    return AttemptOutcome(response.status_code, error, _ms(started))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def record_attempt(
    session: Session, delivery_id: int, outcome: AttemptOutcome, *, max_attempts: int
) -> WebhookDelivery | None:
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return delivery
    now = clock.now()
    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            attempted_at=now,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
        )
    )
    advance_delivery(delivery, outcome, max_attempts=max_attempts, now=now)
    return delivery


def advance_delivery(
    delivery: WebhookDelivery | ReadinessDelivery,
    outcome: AttemptOutcome,
    *,
    max_attempts: int,
    now: datetime,
) -> None:
    """Count one attempt of a delivery (alert or readiness): delivered, given up, or due again
    after a growing delay."""
    delivery.attempts += 1
    if outcome.ok:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
        delivery.last_error = None
    elif delivery.attempts >= max_attempts:
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = None
        delivery.last_error = outcome.error
    else:
        delivery.next_attempt_at = now + retry_delay(delivery.attempts)
        delivery.last_error = outcome.error


def deliveries_of_alert(session: Session, alert_id: int) -> list[WebhookDelivery]:
    """Every delivery of an alert with its attempts (the console shows them)."""
    return list(
        session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.alert_id == alert_id).order_by(WebhookDelivery.id)
        )
    )


def list_webhooks(session: Session) -> list[Webhook]:
    return list(session.scalars(select(Webhook).order_by(Webhook.name)))


def set_webhook_enabled(session: Session, actor: Actor, webhook: Webhook, enabled: bool) -> Webhook:
    """A disabled webhook gets no new deliveries and its pending ones wait until it is enabled."""
    webhook.enabled = enabled
    record_event(
        session,
        actor,
        "webhook.enabled" if enabled else "webhook.disabled",
        "webhook",
        webhook.id,
        {"name": webhook.name},
    )
    return webhook


def trial_delivery(webhook: Webhook, *, secret_key: str) -> OutgoingDelivery:
    """A signed test body for `webhook` (not stored: it belongs to no alert), to POST at once."""
    now = clock.now()
    body = json.dumps(
        {"kind": "webhook.test", "webhook_id": webhook.id, "sent_at": now.isoformat()}, sort_keys=True
    ).encode()
    secret = unseal(secret_key, SEALED_AS, webhook.secret_encrypted)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Hikeshi-MDM-Webhook/1",
        SIGNATURE_HEADER: sign_body(secret, body),
        "X-Hikeshi-Event": "webhook.test",
        "X-Hikeshi-Delivery": f"test-{webhook.id}-{int(now.timestamp())}",
    }
    return OutgoingDelivery(0, webhook.url, body, headers)


def recent_deliveries(session: Session, webhook_id: int, *, limit: int = 100) -> list[WebhookDelivery]:
    """The delivery log of a webhook, newest first."""
    return list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == webhook_id)
            .order_by(WebhookDelivery.id.desc())
            .limit(limit)
        )
    )
