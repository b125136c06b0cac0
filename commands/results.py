"""Recording what a device reported about a command, and doing what its result does (the
command's class says: commands.command_type.CommandType.on_result)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, aliased

from commands.command_type import UnknownCommand
from commands.context import NO_CONTEXT, CommandContext
from commands.queue import command_kind, find_device_command
from mdm.ground import clock
from mdm.ground.audit import Actor, AuditEntry, event_columns, note_unsealed_written, record_event
from mdm.ground.db import is_postgres, one_of
from mdm.ground.hooks import HookPoint
from mdm.ground.models import AuditEvent, Command, CommandResult, CommandStatus, Device, ForeignCommandResult

if TYPE_CHECKING:
    from commands.catalog import Catalog

log = logging.getLogger(__name__)

# Services that follow a device's answer to a command (ADE's configuration step waits for the
# unit's installs): connected by the wiring (mdm.roots.wiring), after the command's own result.
AnsweredHook = Callable[[Session, Device, Command, Actor], None]
COMMAND_ANSWERED: HookPoint[AnsweredHook] = HookPoint("command answered")

# Apple's report statuses and the command state each leads to.
_STATUS_MAP = {
    "Acknowledged": CommandStatus.ACKNOWLEDGED,
    "Error": CommandStatus.ERROR,
    "CommandFormatError": CommandStatus.ERROR,
    "NotNow": CommandStatus.NOT_NOW,
}
REPORT_STATUSES = ("Idle", *_STATUS_MAP)


def record_result(
    session: Session,
    device: Device,
    report: dict[str, Any],
    raw: bytes,
    *,
    actor: Actor,
    identity: str | None = None,
    context: CommandContext = NO_CONTEXT,
    catalog: Catalog | None = None,
) -> Command | None:
    """Store a report exactly as received, with the fingerprint of the identity that signed it
    (None when the server itself records an outcome), and move the command on.

    Returns the command, or None when the UUID is not one of this device's commands: such an
    answer (to a command another MDM sent before the fleet moved to Hikeshi) is kept as a
    ForeignCommandResult. A repeated report for a command that is already final changes nothing.
    """
    status = report["Status"]
    command_uuid = report.get("CommandUUID")
    if not isinstance(command_uuid, str):
        return None
    now = clock.now()
    new_state = _STATUS_MAP[status]
    changes: dict[str, Any] = {"status": new_state}
    if new_state == CommandStatus.ACKNOWLEDGED:
        changes["acknowledged_at"] = now
    elif new_state == CommandStatus.ERROR:
        changes["error_at"] = now
        changes["error_chain"] = _plain(report.get("ErrorChain") or [])
    else:
        changes["not_now_at"] = now
    message_result = report.get("MessageResult")
    if isinstance(message_result, str):
        # DeviceLock says here whether its lock-screen message was shown (device.lock.yaml).
        changes["message_result"] = message_result[:32]
    # One statement settles the answer, guarded as the device's own command that is still waiting
    # for it: a UUID of another device's command, or one answered already (a replayed report),
    # changes nothing here and is told apart below. On PostgreSQL the same statement stores the
    # report (a data-modifying WITH): one round trip fewer on every answer (issue 18).
    stored = {"status": status, "raw": raw, "received_at": now, "certificate_fingerprint": identity}
    params = {"settle_device_id": device.id, "settle_uuid": command_uuid}
    params.update((f"set_{name}", value) for name, value in changes.items())
    action = f"command.{new_state}"
    if is_postgres(session):
        # The INSERT bypasses the ORM's validator: the report is stripped of secrets here as there.
        stored["raw"] = CommandResult.stored_raw(raw)
        # The event's details but what the settled row says (its request type, its lock-screen
        # message result), which the statement adds.
        entry = AuditEntry(action, "command", command_uuid, {"device_id": device.id, "status": status})
        audited = event_columns(actor, entry, now)
        command = session.scalars(
            _settled_stored_and_audited(tuple(changes)),
            {
                **params,
                **{f"store_{k}": v for k, v in stored.items()},
                **{f"audit_{k}": v for k, v in audited.items()},
            },
            execution_options={"populate_existing": True},
        ).first()
        result_stored = command is not None
        if result_stored:
            note_unsealed_written(session)
    else:
        command = session.scalars(
            _settled(tuple(changes)),
            params,
            execution_options={"populate_existing": True, "synchronize_session": False},
        ).first()
        result_stored = False
    if command is None:
        command = find_device_command(session, device, command_uuid)
        if command is None:
            record_foreign_result(session, device, command_uuid, report, raw, actor=actor)
            return None
        if command.status in CommandStatus.FINAL:
            return command
        for key, value in changes.items():  # pending after all: it became so after the UPDATE
            setattr(command, key, value)
    if not result_stored:
        session.add(CommandResult(command_id=command.id, **stored))
        record_event(
            session,
            actor,
            action,
            "command",
            command.uuid,
            {
                "device_id": device.id,
                "request_type": command.request_type,
                "status": status,
                **({"message_result": command.message_result} if command.message_result else {}),
            },
        )
    if new_state in (CommandStatus.ACKNOWLEDGED, CommandStatus.ERROR):
        try:
            kind = command_kind(command.request_type, catalog)
        except UnknownCommand:
            log.warning(
                "command %s: %s is no longer in the catalog; its result does nothing",
                command.uuid,
                command.request_type,
            )
            return command
        kind.on_result(session, command, report, context)
        for hook in COMMAND_ANSWERED.hooks(session):
            hook(session, device, command, actor)
    return command


@lru_cache(maxsize=16)
def _settle(changed: tuple[str, ...]) -> Any:
    """The UPDATE that settles a device's answer, for the columns `changed` (bound as set_<name>),
    guarded as the device's own command still waiting for it. Built once per shape: building a
    statement costs more CPU than running it."""
    columns = Command.__table__.c
    return (
        update(Command)
        .where(
            Command.device_id == bindparam("settle_device_id"),
            Command.uuid == bindparam("settle_uuid"),
            one_of(Command.status, CommandStatus.PENDING),
        )
        .values({name: bindparam(f"set_{name}", type_=columns[name].type) for name in changed})
    )


@lru_cache(maxsize=16)
def _settled(changed: tuple[str, ...]) -> Any:
    return _settle(changed).returning(Command)


# The columns of an unsealed audit event the settling statement binds (audit.event_columns).
_AUDITED = ("occurred_at", "actor", "actor_role", "source_ip", "action", "target_type", "target_id")


@lru_cache(maxsize=16)
def _settled_stored_and_audited(changed: tuple[str, ...]) -> Any:
    """`_settle` as a WITH that also inserts its CommandResult (bound as store_<name>) and its
    audit event, unsealed (bound as audit_<name>; the details gain the settled row's request type
    and message result), selecting the settled command. Nothing is inserted when nothing was
    settled. PostgreSQL runs every data-modifying WITH to completion, read or not: one round trip
    on every answer instead of three (issue 18)."""
    settled = _settle(changed).returning(*Command.__table__.c).cte("settled")
    columns = CommandResult.__table__.c
    stored = ("status", "raw", "received_at", "certificate_fingerprint")
    store = insert(CommandResult).from_select(
        ["command_id", *stored],
        select(settled.c.id, *(bindparam(f"store_{name}", type_=columns[name].type) for name in stored)),
    )
    events = AuditEvent.__table__.c
    # As record_event's details: the message result only when there is one.
    message_result = func.nullif(settled.c.message_result, "")
    from_row = func.jsonb_strip_nulls(
        func.jsonb_build_object("request_type", settled.c.request_type, "message_result", message_result)
    )
    audit = insert(AuditEvent).from_select(
        [*_AUDITED, "details"],
        select(
            *(bindparam(f"audit_{name}", type_=events[name].type) for name in _AUDITED),
            bindparam("audit_details", type_=JSONB).op("||")(from_row),
        ).select_from(settled),
    )
    return select(aliased(Command, settled)).add_cte(store.cte("stored")).add_cte(audit.cte("audited"))


# Keys every report carries; the rest say what the answer is about.
_ENVELOPE_KEYS = frozenset({"UDID", "CommandUUID", "Status", "EnrollmentID", "EnrollmentUserID", "UserID"})
_MAX_UUID = 64


def record_foreign_result(
    session: Session, device: Device, command_uuid: str, report: dict[str, Any], raw: bytes, *, actor: Actor
) -> ForeignCommandResult | None:
    """Keep, exactly as received, a device's answer to a command Hikeshi did not queue."""
    status = str(report.get("Status"))
    uuid = command_uuid[:_MAX_UUID]
    repeated = session.scalars(
        select(ForeignCommandResult.id).where(
            ForeignCommandResult.device_id == device.id,
            ForeignCommandResult.command_uuid == uuid,
            ForeignCommandResult.status == status,
        )
    ).first()
    if repeated is not None:
        return None  # the device sent the same answer again (a retried connection)
    keys = sorted(str(key) for key in report if key not in _ENVELOPE_KEYS)
    row = ForeignCommandResult(
        device_id=device.id,
        command_uuid=uuid,
        status=status,
        answer_keys=keys,
        raw=raw,
        received_at=clock.now(),
    )
    session.add(row)
    log.info("device %s answered command %s, which Hikeshi did not queue: kept", device.id, uuid)
    record_event(
        session,
        actor,
        "command.foreign_result",
        "command",
        uuid,
        {"device_id": device.id, "status": status, "answer_keys": keys},
    )
    return row


def _plain(value: Any) -> Any:
    """Make a plist value JSON-safe (bytes and dates appear in error chains now and then)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
