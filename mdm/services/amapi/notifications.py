"""AMAPI notifications, pulled from the enterprise's Pub/Sub subscription by the scheduler's
`amapi_pull` job, and the `devices.list` reconcile for notifications that were lost.

Each message is applied in its own transaction together with its AmapiNotification row (keyed by
the Pub/Sub messageId), and acknowledged only after that transaction committed: a process killed
before the acknowledgement gets the message again, which then meets its row and changes nothing.
A message that cannot be applied now (the database failed) is not acknowledged and comes back.

- ENROLLMENT: the Device lands in the unit of Hikeshi's token (mdm.services.amapi.device_reports);
  a token Hikeshi never made is refused and flagged.
- STATUS_REPORT: inventory, compliance findings (policyCompliant, nonComplianceDetails) and so
  readiness, as for the other platforms.
- COMMAND: the Operation settles its command (mdm.services.amapi.operations).
- USAGE_LOGS: dropped, with the reason recorded: Hikeshi keeps no usage logs (no retention rule
  covers them, and the device's audit trail is the server's own).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from commands.context import CommandContext
from mdm.ground import clock
from mdm.ground.db import transaction
from mdm.ground.models import AmapiNotification, AmapiNotificationOutcome
from mdm.services.amapi.device_reports import apply_device
from mdm.services.amapi.google_time import google_time
from mdm.services.amapi.operations import settle_by_operation
from mdm.services.amapi.sending import AmapiCaller

log = logging.getLogger(__name__)

MAX_MESSAGES = 100
USAGE_LOGS_DROPPED = "usage logs are not kept: no retention rule covers them"
# A message larger than this is not a Device Google would send: dropped, never parsed.
MAX_DATA_BYTES = 4 * 1024 * 1024


class PubSubCaller(Protocol):
    def pubsub(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]: ...


@dataclass
class PullReport:
    received: int = 0
    applied: int = 0
    duplicates: int = 0
    dropped: int = 0
    refused: int = 0
    unacked: int = 0
    by_type: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)  # the scheduler job's result, field by field (copies, not the live lists)


@dataclass(frozen=True)
class Outcome:
    outcome: str
    reason: str | None = None
    device_name: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _decode(message: dict[str, Any]) -> dict[str, Any] | None:
    data = message.get("data")
    if not isinstance(data, str) or len(data) > MAX_DATA_BYTES * 4 // 3 + 4:
        return None
    try:
        value = json.loads(base64.b64decode(data, validate=False))
    except (binascii.Error, ValueError):
        return None
    return value if isinstance(value, dict) else None


def apply_notification(
    session: Session, notification_type: str, resource: dict[str, Any] | None, context: CommandContext
) -> Outcome:
    """What one notification does, in the caller's transaction."""
    if resource is None:
        return Outcome(AmapiNotificationOutcome.DROPPED, "the message data is not a JSON object")
    name = resource.get("name") if isinstance(resource.get("name"), str) else None
    if notification_type in ("ENROLLMENT", "STATUS_REPORT"):
        applied = apply_device(session, resource, enrolling=notification_type == "ENROLLMENT")
        outcome = {
            "applied": AmapiNotificationOutcome.APPLIED,
            "refused": AmapiNotificationOutcome.REFUSED,
            "unknown_device": AmapiNotificationOutcome.UNKNOWN_DEVICE,
            "retired": AmapiNotificationOutcome.DROPPED,
        }[applied.outcome]
        return Outcome(outcome, applied.reason, name, {"device_id": applied.device_id})
    if notification_type == "COMMAND":
        device_name = name.split("/operations/", 1)[0] if name else None
        settled = settle_by_operation(session, resource, context)
        if settled is None:
            return Outcome(
                AmapiNotificationOutcome.DROPPED, "an operation Hikeshi did not issue", device_name
            )
        return Outcome(AmapiNotificationOutcome.APPLIED, None, device_name, {"settled": settled})
    if notification_type == "USAGE_LOGS":
        device = resource.get("device") if isinstance(resource.get("device"), str) else name
        return Outcome(AmapiNotificationOutcome.DROPPED, USAGE_LOGS_DROPPED, device)
    return Outcome(
        AmapiNotificationOutcome.DROPPED, f"notification type {notification_type[:40]!r} is not used", name
    )


def apply_message(session: Session, message: dict[str, Any], context: CommandContext) -> Outcome | None:
    """One Pub/Sub message, applied with its AmapiNotification row; None when it was applied
    before (a redelivery: nothing changes)."""
    message_id = str(message.get("messageId") or "")[:128]
    found = message.get("attributes")
    attributes: dict[str, Any] = found if isinstance(found, dict) else {}
    notification_type = str(attributes.get("notificationType") or "UNKNOWN")[:32]
    if not message_id:
        return Outcome(AmapiNotificationOutcome.DROPPED, "the message has no messageId")
    seen = session.scalars(
        select(AmapiNotification.id).where(AmapiNotification.message_id == message_id)
    ).first()
    if seen is not None:
        return None
    outcome = apply_notification(session, notification_type, _decode(message), context)
    session.add(
        AmapiNotification(
            message_id=message_id,
            notification_type=notification_type,
            device_name=(outcome.device_name or None) and outcome.device_name[:255],
            published_at=google_time(message.get("publishTime")),
            received_at=clock.now(),
            outcome=outcome.outcome,
            reason=(outcome.reason or None) and outcome.reason[:255],
            details=outcome.details,
        )
    )
    session.flush()
    return outcome


def pull_once(
    factory: sessionmaker[Session],
    client: PubSubCaller,
    subscription: str,
    context: CommandContext,
    *,
    max_messages: int = MAX_MESSAGES,
    report: PullReport | None = None,
) -> PullReport:
    """One pull: every message applied in its own transaction, then the committed ones acked."""
    report = report if report is not None else PullReport()
    answer = client.pubsub("POST", f"{subscription}:pull", {"maxMessages": max_messages})
    received = answer.get("receivedMessages") or []
    ack_ids: list[str] = []
    for item in received:
        report.received += 1
        ack_id = item.get("ackId")
        message = item.get("message") if isinstance(item.get("message"), dict) else {}
        kind = str((message.get("attributes") or {}).get("notificationType") or "UNKNOWN")
        report.by_type[kind] = report.by_type.get(kind, 0) + 1
        try:
            with transaction(factory) as session:
                outcome = apply_message(session, message, context)
        except IntegrityError:
            # Another puller applied the same message at the same moment: it is applied once.
            outcome = None
        except Exception:
            log.exception(
                "AMAPI notification %s could not be applied; it comes back", message.get("messageId")
            )
            report.unacked += 1
            continue
        if outcome is None:
            report.duplicates += 1
        elif outcome.outcome == AmapiNotificationOutcome.APPLIED:
            report.applied += 1
        elif outcome.outcome == AmapiNotificationOutcome.REFUSED:
            report.refused += 1
        else:
            report.dropped += 1
        if isinstance(ack_id, str):
            ack_ids.append(ack_id)
    if ack_ids:
        client.pubsub("POST", f"{subscription}:acknowledge", {"ackIds": ack_ids})
    return report


def pull(
    factory: sessionmaker[Session],
    client: PubSubCaller,
    subscription: str,
    context: CommandContext,
    *,
    max_pulls: int = 10,
) -> PullReport:
    """Pull until the subscription answers empty (bounded: a run never loops for ever)."""
    report = PullReport()
    for _ in range(max_pulls):
        before = report.received
        pull_once(factory, client, subscription, context, report=report)
        if report.received == before:
            break
    return report


def reconcile_enterprise_devices(
    factory: sessionmaker[Session], client: AmapiCaller, enterprise_name: str, *, page_size: int = 100
) -> dict[str, int]:
    """devices.list, every page: each Device applied as a status report (and one enrolled with
    Hikeshi's token but never announced, enrolled), for the notifications that were lost."""
    seen = applied = refused = 0
    token: str | None = None
    for _ in range(1000):
        params: dict[str, Any] = {"pageSize": page_size}
        if token:
            params["pageToken"] = token
        page = client.call("GET", f"{enterprise_name}/devices", params=params)
        for resource in page.get("devices") or []:
            seen += 1
            with transaction(factory) as session:
                outcome = apply_device(session, resource, enrolling=True)
            if outcome.outcome == "applied":
                applied += 1
            elif outcome.outcome == "refused":
                refused += 1
        token = page.get("nextPageToken")
        if not token:
            break
    return {"devices": seen, "applied": applied, "refused": refused}
