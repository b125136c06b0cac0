"""Sending the queued commands of AMAPI-mode tablets: `devices.issueCommand`, and for the wipe
`devices.delete` (mdm.services.amapi.wipe), after the commit that queued them, exactly once.

The commands are the same rows as for every other device (commands.queue: the hotline, the API
and the console queue them unchanged). A commit that queues one for an AMAPI device also writes an
outbox row (`OutboxTopic.AMAPI_SEND`, subject the device, in that commit: `ask_before_commit`);
right after the commit this process sends it (`send_device`), and the scheduler's `amapi_send`
sweep sends whatever a killed process left.

The fence is the AmapiCommandSend row: committed BEFORE the network call (the claim), its
Operation name committed right AFTER. A sender killed between the two leaves a claim without an
operation: the next one first looks on the device (`operations.list`) for an operation of that
command created since the claim, and adopts it instead of sending again. Two senders never claim
one command (the claim is taken on the command row, locked on PostgreSQL, and a young claim is
left to its holder).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.util import identity_key

from commands.command_type import COMMAND_SECRET_PURPOSE
from commands.context import CommandContext
from commands.results import record_result
from mdm.ground import clock
from mdm.ground.audit import record_event
from mdm.ground.db import is_postgres, transaction
from mdm.ground.models import (
    AmapiCommandSend,
    AmapiDevice,
    AmapiSendKind,
    Command,
    CommandStatus,
    Device,
    OutboxTopic,
)
from mdm.ground.models.amapi_ops import amapi_identity
from mdm.ground.push import PENDING_PUSHES, outbox
from mdm.ground.secretbox import unseal
from mdm.services.amapi.command_map import (
    NotOnAmapi,
    OperationOutcome,
    command_duration,
    issue_command_body,
    operation_outcome,
    report_for,
    without_secrets,
)
from mdm.services.amapi.google_time import google_time
from mdm.services.amapi.sending import SENDER, AmapiCaller, SendReport, record_refusal, refused_for_good
from mdm.services.amapi.wipe import issue_delete

log = logging.getLogger(__name__)

# A claim younger than this belongs to the sender that made it (it is waiting for Google).
CLAIM_LEASE = timedelta(seconds=120)
# An operation created this long before its claim was recorded is still taken as its own (the
# two clocks differ a little).
CLOCK_SKEW = timedelta(minutes=2)
# A device's failed send is tried again after this long (the outbox row's backoff).
RETRY_DELAY = timedelta(seconds=60)
MAX_COMMANDS_PER_DEVICE = 50


# -- asked in the queueing commit ----------------------------------------------------------------------


def ask_before_commit(session: Session) -> None:
    """The before_commit listener: the AMAPI devices this transaction queued commands for (the
    push requests commands.queue makes for every queued command) get an AMAPI_SEND outbox row,
    in this transaction. Apple devices loaded in the session cost no query."""
    if session.in_nested_transaction():
        return
    asked: set[int] = session.info.get(PENDING_PUSHES) or set()
    candidates = []
    for device_id in asked:
        loaded = session.identity_map.get(identity_key(Device, device_id))
        if loaded is None or loaded.platform == "android":
            candidates.append(device_id)
    if not candidates:
        return
    amapi = list(session.scalars(select(AmapiDevice.device_id).where(AmapiDevice.device_id.in_(candidates))))
    if amapi:
        outbox.request(session, OutboxTopic.AMAPI_SEND, amapi)
        session.info.setdefault(SEND_NOW_KEY, set()).update(amapi)


# session.info key: the AMAPI devices whose commands this process sends right after the commit.
SEND_NOW_KEY = "hikeshi.amapi.send_now"


def take_send_now(session: Session) -> set[int]:
    return session.info.pop(SEND_NOW_KEY, set())


# -- sending ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claim:
    command_id: int
    command_uuid: str
    request_type: str
    params: dict[str, Any]
    device_name: str
    kind: str
    # Set when an earlier claim of this command was left without an operation (a killed sender).
    earlier_claim: datetime | None
    # Hikeshi's own lifetime of the command (None: it never expires, like a lock or lost mode).
    expires_at: datetime | None = None


def send_due(
    factory: sessionmaker[Session],
    client: AmapiCaller,
    context: CommandContext,
    *,
    device_ids: Iterable[int] | None = None,
    limit: int = 200,
) -> SendReport:
    """Send the queued commands of `device_ids` (right after a commit), or of every device whose
    AMAPI_SEND outbox row is due (the scheduler's sweep); settle each device's row once done."""
    report = SendReport()
    started = clock.now()
    with transaction(factory) as session:
        if device_ids is None:
            ids = outbox.claim_due(session, OutboxTopic.AMAPI_SEND, limit=limit)
        else:
            ids = sorted(set(device_ids))
    for device_id in ids:
        try:
            send_device(factory, client, context, device_id, report)
        except Exception as exc:
            log.exception("AMAPI commands of device %s: sending failed; retried later", device_id)
            report.failed_devices.append(device_id)
            with transaction(factory) as session:
                outbox.request(session, OutboxTopic.AMAPI_SEND, [device_id])
                outbox.retry_later(
                    session, OutboxTopic.AMAPI_SEND, [device_id], error=repr(exc), delay=RETRY_DELAY
                )
            continue
        with transaction(factory) as session:
            outbox.settle(session, OutboxTopic.AMAPI_SEND, [device_id], requested_before=started)
    return report


def send_device(
    factory: sessionmaker[Session],
    client: AmapiCaller,
    context: CommandContext,
    device_id: int,
    report: SendReport | None = None,
) -> SendReport:
    """Every waiting command of one AMAPI device, highest priority first: claim, send, record."""
    report = report if report is not None else SendReport()
    for _ in range(MAX_COMMANDS_PER_DEVICE):
        with transaction(factory) as session:
            claim = claim_next(session, device_id, context)
        if claim is None:
            return report
        issue_claimed(factory, client, context, claim, report)
    return report


def claim_next(session: Session, device_id: int, context: CommandContext) -> _Claim | None:
    """The device's next command to send, claimed in this transaction (committed by the caller
    before any network call): a queued one, or one whose earlier claim was left without an
    operation by a sender that died. Commands AMAPI cannot run end in error here."""
    amapi = session.scalars(select(AmapiDevice).where(AmapiDevice.device_id == device_id)).first()
    if amapi is None:
        return None
    now = clock.now()
    while True:
        stmt = (
            select(Command)
            .outerjoin(AmapiCommandSend, AmapiCommandSend.command_id == Command.id)
            .where(
                Command.device_id == device_id,
                (Command.status == CommandStatus.QUEUED)
                | (
                    (Command.status == CommandStatus.SENT)
                    & AmapiCommandSend.operation_name.is_(None)
                    & AmapiCommandSend.done_at.is_(None)
                    & (AmapiCommandSend.claimed_at < now - CLAIM_LEASE)
                ),
            )
            .order_by(Command.priority.desc(), Command.id)
            .limit(1)
        )
        if is_postgres(session):
            stmt = stmt.with_for_update(of=Command, skip_locked=True)
        command = session.scalars(stmt).first()
        if command is None:
            return None
        if (
            command.status == CommandStatus.QUEUED
            and command.expires_at is not None
            and command.expires_at < now
        ):
            command.status, command.expired_at, command.sealed_secret = CommandStatus.EXPIRED, now, None
            continue
        kind = AmapiSendKind.DELETE if command.request_type == "EraseDevice" else AmapiSendKind.COMMAND
        if kind == AmapiSendKind.COMMAND:
            try:
                issue_command_body(command.request_type, command.params or {})
            except NotOnAmapi as exc:
                _refuse(session, command, str(exc), context)
                continue
        send = session.get(AmapiCommandSend, command.id)
        earlier = None
        if send is None:
            send = AmapiCommandSend(
                command_id=command.id, device_name=amapi.amapi_name, kind=kind, attempts=0
            )
            session.add(send)
        else:
            earlier = send.claimed_at
        send.claimed_at = now
        send.attempts += 1
        command.status = CommandStatus.SENT
        command.sent_at = now
        command.delivery_count += 1
        session.flush()
        return _Claim(
            command.id,
            command.uuid,
            command.request_type,
            dict(command.params or {}),
            send.device_name,
            kind,
            earlier,
            command.expires_at,
        )


def _refuse(session: Session, command: Command, reason: str, context: CommandContext) -> None:
    report = {
        "CommandUUID": command.uuid,
        "Status": "Error",
        "ErrorChain": [{"ErrorDomain": "hikeshi.amapi", "ErrorCode": 0, "USEnglishDescription": reason}],
    }
    record_result(session, command.device, report, json.dumps(report).encode(), actor=SENDER, context=context)


def issue_claimed(
    factory: sessionmaker[Session],
    client: AmapiCaller,
    context: CommandContext,
    claim: _Claim,
    report: SendReport,
) -> None:
    """The network part of one claimed command, then its outcome recorded."""
    if claim.kind == AmapiSendKind.DELETE:
        issue_delete(
            factory, client, context, claim.command_id, claim.device_name, claim.earlier_claim, report
        )
        return
    operation = None
    if claim.earlier_claim is not None:
        with transaction(factory) as session:
            taken = frozenset(
                name
                for name in session.scalars(
                    select(AmapiCommandSend.operation_name).where(
                        AmapiCommandSend.device_name == claim.device_name,
                        AmapiCommandSend.operation_name.is_not(None),
                    )
                )
                if name
            )
        operation = find_issued_operation(client, claim, claim.earlier_claim, taken)
        if operation is not None:
            report.adopted += 1
    if operation is None:
        secret = _secret(factory, context, claim.command_id)
        body = issue_command_body(claim.request_type, claim.params, secret)
        body["duration"] = command_duration(claim.expires_at, clock.now())
        try:
            operation = client.call("POST", f"{claim.device_name}:issueCommand", body=body)
        except Exception as exc:
            if refused_for_good(exc):
                with transaction(factory) as session:
                    record_refusal(session, claim.command_id, claim.device_name, exc, context)
                report.refused += 1
                return
            with transaction(factory) as session:
                send = session.get(AmapiCommandSend, claim.command_id)
                if send is not None:
                    send.last_error = f"{type(exc).__name__}: {exc}"[:255]
            raise
        report.issued += 1
    with transaction(factory) as session:
        if record_operation(session, claim.command_id, operation, context):
            report.settled += 1


def _secret(factory: sessionmaker[Session], context: CommandContext, command_id: int) -> str | None:
    """A ResetPassword's new password, unsealed for the call only (never logged nor stored)."""
    with transaction(factory) as session:
        sealed = session.scalar(select(Command.sealed_secret).where(Command.id == command_id))
    if not sealed:
        return None
    if context.settings is None:
        raise RuntimeError("the settings are needed to unseal the command's password")
    return unseal(context.settings.secret_key, COMMAND_SECRET_PURPOSE, sealed).decode("utf-8")


def find_issued_operation(
    client: AmapiCaller, claim: _Claim, since: datetime, taken: frozenset[str] = frozenset()
) -> dict[str, Any] | None:
    """An operation of this command that a killed sender issued after claiming it: same command
    type, created since the claim, on the device, and not already another command's (`taken`)."""
    wanted = issue_command_body(claim.request_type, claim.params)["type"]
    token = None
    for _ in range(20):
        params: dict[str, Any] = {"pageSize": 100}
        if token:
            params["pageToken"] = token
        page = client.call("GET", f"{claim.device_name}/operations", params=params)
        for operation in page.get("operations") or []:
            metadata = operation.get("metadata") or {}
            created = google_time(metadata.get("createTime"))
            if metadata.get("type") != wanted or created is None or created < since - CLOCK_SKEW:
                continue
            if operation.get("name") in taken:
                continue
            return operation
        token = page.get("nextPageToken")
        if not token:
            return None
    return None


def record_operation(
    session: Session, command_id: int, operation: dict[str, Any], context: CommandContext
) -> bool:
    """Store the Operation's name on the command (the fence) and settle it when it is done.
    Returns whether the command reached a final state. An operation already recorded for another
    command is not taken twice."""
    send = session.get(AmapiCommandSend, command_id)
    name = operation.get("name")
    if send is None or not isinstance(name, str):
        return False
    if send.operation_name is None:
        taken = session.scalars(
            select(AmapiCommandSend.command_id).where(AmapiCommandSend.operation_name == name)
        ).first()
        if taken is not None and taken != command_id:
            return False
        send.operation_name = name
        send.issued_at = clock.now()
        command = session.get(Command, command_id)
        if command is not None:
            record_event(
                session,
                SENDER,
                "command.issued_amapi",
                "command",
                command.uuid,
                {"device_id": command.device_id, "request_type": command.request_type, "operation": name},
            )
    return settle_operation(session, send, operation, context)


def settle_operation(
    session: Session, send: AmapiCommandSend, operation: dict[str, Any], context: CommandContext
) -> bool:
    """What a (polled or notified) Operation says, recorded once: pending stays pending; done
    with an error is the command's failure; done is its acknowledgement."""
    outcome: OperationOutcome = operation_outcome(operation)
    now = clock.now()
    send.polled_at = now
    if outcome.pending or send.done_at is not None:
        return False
    send.done_at = now
    if outcome.failed:
        send.error_code = (outcome.code or "UNKNOWN")[:64]
        send.error_message = (outcome.message or "")[:512]
    command = session.get(Command, send.command_id)
    if command is None or command.status in CommandStatus.FINAL:
        return False
    raw = json.dumps(without_secrets(operation), sort_keys=True).encode()
    record_result(
        session,
        command.device,
        report_for(command.uuid, outcome),
        raw,
        actor=SENDER,
        identity=amapi_identity(send.device_name),
        context=context,
    )
    return True
