"""The per-device command queue.

Commands are offered highest priority first, oldest first within a priority. A command is
written before any push and stays queued until the device answers it, it is cancelled, or it
expires (DESIGN.md invariant 1).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, Integer, String, Table, func, literal, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, make_transient_to_detached

from commands.command_type import CommandType
from commands.context import NO_CONTEXT, CommandContext
from mdm.ground import clock
from mdm.ground.audit import Actor, AuditEntry, record_event, record_events
from mdm.ground.db import is_postgres
from mdm.ground.models import Command, CommandStatus, Device, EnrollmentState
from mdm.ground.push import request_push, request_pushes

if TYPE_CHECKING:
    from commands.catalog import Catalog


class CommandRefused(ValueError):
    """The command cannot be queued for this device (platform, supervision, state).

    `code` names a refusal an API client can act on; `message_ja` is the operator's reason in
    Japanese when the refusal has one (the English one is the message)."""

    def __init__(
        self,
        message: str,
        field: str = "request_type",
        *,
        code: str | None = None,
        message_ja: str | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.code = code
        self.message_ja = message_ja

    @property
    def bilingual(self) -> str:
        """Japanese first, then English: what the console shows."""
        return f"{self.message_ja} / {self}" if self.message_ja else str(self)


class TwoPersonCommand(CommandRefused):
    """A wipe is never queued directly: it needs a request and a second person's approval."""

    def __init__(self, request_type: str) -> None:
        super().__init__(
            f"{request_type} needs a wipe request approved by a second person (hotline incident); "
            "it cannot be queued directly"
        )
        self.request_type = request_type


class CommandStateError(ValueError):
    """The command is not in a state that allows the requested change."""


_USE_DEFAULT: Any = object()


def command_kind(request_type: str, catalog: Catalog | None = None) -> CommandType:
    """The command class of `request_type` in `catalog` (the application's CATALOG by default).

    Imported when first asked for: the catalog's commands import what their results do (the
    hotline, inventory), and those import this queue."""
    if catalog is None:
        from commands.catalog import CATALOG

        catalog = CATALOG
    return catalog.get(request_type)


def refuse_direct(kind: CommandType) -> None:
    """The two-person rule, for every door that queues a command someone asked for by name:
    a wipe is never queued directly (DESIGN.md invariant 2)."""
    if kind.two_person:
        raise TwoPersonCommand(kind.request_type)


# session.info key: commands were queued in this session since its last delivery, so a look ahead
# at the queue taken before them (commands.delivery.waiting_command) is not the whole queue.
QUEUED_HERE = "hikeshi.commands_queued_here"


def enqueue_command(
    session: Session,
    device: Device,
    request_type: str,
    params: Mapping[str, Any] | None,
    *,
    actor: Actor,
    priority: int | None = None,
    expires_at: datetime | None = _USE_DEFAULT,
    push: bool = True,
    wipe_approved: bool = False,
    catalog: Catalog | None = None,
    context: CommandContext = NO_CONTEXT,
) -> Command:
    """Validate and queue one command, audit it, and ask for a push after commit.

    A command the catalog marks `two_person` (EraseDevice) is refused unless `wipe_approved`: only
    the hotline's approval or break glass (commands.incidents.service) passes it.

    For a coalescing (inventory) command already pending on this device, the pending one is
    returned instead of queueing another: offline devices must not pile up refreshes.
    """
    kind = command_kind(request_type, catalog)
    if not wipe_approved:
        refuse_direct(kind)
    clean = kind.validate(params)
    _check_allowed(kind, device)
    clean, sealed = kind.seal_secret(session, device, clean, context)
    if kind.coalesce:
        pending = pending_command_of_type(session, device, request_type)
        if pending is not None:
            # Whoever asks for a refresh wants it now: the waiting one gets a fresh wake-up.
            if push:
                request_push(session, device.id)
            return pending
    now = clock.now()
    if expires_at is _USE_DEFAULT:
        expires_at = _expires_at(context, kind, now)
    command = Command(
        uuid=str(uuid.uuid4()).upper(),
        device_id=device.id,
        request_type=request_type,
        params=clean,
        sealed_secret=sealed,
        priority=kind.priority if priority is None else priority,
        status=CommandStatus.QUEUED,
        requested_by=actor.name,
        queued_at=now,
        expires_at=expires_at,
    )
    session.add(command)
    session.flush()
    session.info[QUEUED_HERE] = True
    record_event(
        session,
        actor,
        "command.queued",
        "command",
        command.uuid,
        {"device_id": device.id, "request_type": request_type, "params": clean, "priority": command.priority},
    )
    if push:
        request_push(session, device.id)
    return command


@dataclass(frozen=True)
class CommandRequest:
    """One command for `enqueue_commands`; requests may share one params mapping."""

    device: Device
    request_type: str
    params: Mapping[str, Any] | None


def enqueue_commands(
    session: Session,
    requests: Sequence[CommandRequest],
    *,
    actor: Actor,
    push: bool = True,
    catalog: Catalog | None = None,
    context: CommandContext = NO_CONTEXT,
    batch: str | None = None,
) -> list[Command]:
    """Queue many commands as `enqueue_command` would, one after the other, but in bulk.

    The same validation (every request is checked before anything is written: all or nothing),
    one push request per device (one outbox statement); the rows are inserted in one flush and
    parameters shared between requests are validated once (a profile sent to a thousand devices
    is decoded once, not a thousand times).

    Audit: one event per command, unless `batch` names the bulk operation: then every fresh
    command carries it and the caller records ONE event for the whole batch, with
    `batch_audit_details` (how many, which command ids, a digest of the list); the commands of
    the batch are found by `Command.batch`.
    """
    validated: dict[tuple[str, int], dict[str, Any]] = {}
    planned: list[tuple[CommandRequest, CommandType, dict[str, Any], bytes | None]] = []
    for request in requests:
        kind = command_kind(request.request_type, catalog)
        refuse_direct(kind)
        cache_key = (request.request_type, id(request.params))
        clean = validated.get(cache_key)
        if clean is None:
            clean = validated[cache_key] = kind.validate(request.params)
        _check_allowed(kind, request.device)
        params, sealed = kind.seal_secret(session, request.device, clean, context)
        planned.append((request, kind, params, sealed))
    now = clock.now()
    commands: list[Command] = []
    fresh: list[Command] = []
    for request, kind, clean, sealed in planned:
        if kind.coalesce:
            pending = pending_command_of_type(session, request.device, request.request_type)
            if pending is not None:
                commands.append(pending)
                continue
        command = Command(
            uuid=str(uuid.uuid4()).upper(),
            device_id=request.device.id,
            request_type=request.request_type,
            params=clean,
            sealed_secret=sealed,
            priority=kind.priority,
            status=CommandStatus.QUEUED,
            requested_by=actor.name,
            queued_at=now,
            expires_at=_expires_at(context, kind, now),
            batch=batch,
        )
        commands.append(command)
        fresh.append(command)
    if fresh:
        session.info[QUEUED_HERE] = True
    if batch is None:
        session.add_all(fresh)
        session.flush()
        _record_queued(session, actor, fresh)
    elif fresh:
        commands = _insert_batch(session, batch, commands, fresh)
    if push:
        # Every device with a command, fresh or already waiting (see enqueue_command), in one write.
        request_pushes(session, {command.device_id for command in commands})
    return commands


def _insert_batch(
    session: Session, batch: str, commands: list[Command], fresh: list[Command]
) -> list[Command]:
    """The batch's fresh commands in one executemany INSERT (a few statements of a thousand rows
    each, ids returned), made persistent in the session without being inserted again.

    The ORM's flush would insert them one by one where the driver cannot return many ids in
    order (SQLite); the ids are matched here by UUID instead, whatever order they come back in."""
    defaults: dict[str, Any] = {}
    for column in Command.__table__.columns:
        if column.key == "id":
            continue
        default = column.default
        # Scalar column defaults (delivery_count=0, …), which the ORM would otherwise have applied.
        is_scalar = default is not None and getattr(default, "is_scalar", False)
        defaults[column.key] = getattr(default, "arg", None) if is_scalar else None
    rows = []
    for command in fresh:
        known = command.__dict__  # what the constructor set; reading it skips the ORM's descriptors
        row = {key: known.get(key, default) for key, default in defaults.items()}
        for key, value in row.items():
            if key not in known:
                setattr(command, key, value)
        rows.append(row)
    table = cast(Table, Command.__table__)
    ids: dict[str, int] = {}
    if is_postgres(session):
        for statement in _unnest_inserts(table, rows):
            ids.update({uuid_: id_ for id_, uuid_ in session.execute(statement)})
    else:
        returning = table.insert().returning(table.c.id, table.c.uuid, sort_by_parameter_order=False)
        ids = {uuid_: id_ for id_, uuid_ in session.connection().execute(returning, rows)}
    for command in fresh:
        command.id = ids[command.uuid]
        make_transient_to_detached(command)
        session.add(command)
    return commands


# The columns that differ from one command of a batch to the next; the others are shared by every
# command queued with the same parameters, and travel once.
_PER_COMMAND = ("uuid", "device_id")


def _unnest_inserts(table: Any, rows: list[dict[str, Any]]) -> list[Any]:
    """PostgreSQL: one INSERT … SELECT unnest(uuids), unnest(device ids) per group of commands that
    share everything else (one group for a profile assigned to a unit). A multi-row VALUES list
    binds every column of every row (24 parameters a command): parsing and planning ten of those
    for ten thousand commands took seconds; two arrays take none."""
    groups: dict[str, tuple[dict[str, Any], list[str], list[int]]] = {}
    for row in rows:
        shared = {key: value for key, value in row.items() if key not in _PER_COMMAND}
        group = groups.setdefault(json.dumps(shared, sort_keys=True, default=str), (shared, [], []))
        group[1].append(row["uuid"])
        group[2].append(row["device_id"])
    statements = []
    for shared, uuids, device_ids in groups.values():
        selected = select(
            func.unnest(literal(uuids, postgresql.ARRAY(String))).label("uuid"),
            func.unnest(literal(device_ids, postgresql.ARRAY(Integer))).label("device_id"),
            *(literal(value, table.c[key].type).label(key) for key, value in shared.items()),
        )
        columns = ["uuid", "device_id", *shared]
        statements.append(
            postgresql.insert(table).from_select(columns, selected).returning(table.c.id, table.c.uuid)
        )
    return statements


def new_batch() -> str:
    """A name for one bulk queueing (Command.batch)."""
    return str(uuid.uuid4())


def batch_audit_details(batch: str, commands: Sequence[Command]) -> dict[str, Any]:
    """What the one audit event of a batch says about its commands: enough to find each of them
    (`Command.batch`, the id range) and to notice one added, removed or moved to another device
    afterwards (the digest over every "uuid device_id" line, in id order, is in the sealed chain)."""
    mine = sorted((c for c in commands if c.batch == batch), key=lambda c: c.id)
    lines = "".join(f"{c.uuid} {c.device_id}\n" for c in mine)
    return {
        "batch": batch,
        "commands": len(mine),
        "devices": len({c.device_id for c in mine}),
        "first_command_id": mine[0].id if mine else None,
        "last_command_id": mine[-1].id if mine else None,
        "commands_sha256": hashlib.sha256(lines.encode()).hexdigest(),
    }


def _expires_at(context: CommandContext, kind: CommandType, now: datetime) -> datetime | None:
    lifetime = kind.lifetime(context.command_expiry)
    return None if lifetime is None else now + lifetime


def _record_queued(session: Session, actor: Actor, commands: Sequence[Command]) -> None:
    """One command.queued event per command, appended to the chain in one insert (mdm.ground.audit
    redacts the parameters and keeps a digest of a large profile)."""
    record_events(
        session,
        actor,
        [
            AuditEntry(
                "command.queued",
                "command",
                c.uuid,
                {
                    "device_id": c.device_id,
                    "request_type": c.request_type,
                    "params": c.params,
                    "priority": c.priority,
                },
            )
            for c in commands
        ],
    )


def _check_allowed(kind: CommandType, device: Device) -> None:
    if device.platform not in kind.platforms:
        raise CommandRefused(f"{kind.request_type} is not available for {device.platform} devices")
    if device.enrollment_state not in (EnrollmentState.ENROLLED, EnrollmentState.PENDING):
        raise CommandRefused(
            f"device is {device.enrollment_state}; commands need an enrolled device", field="device"
        )
    if kind.refuse_for is not None and device.platform == "apple":
        reason = kind.refuse_for(device)
        if reason is not None:
            raise CommandRefused(reason[1], field="device", code="device_cannot_run", message_ja=reason[0])
    if kind.requires_supervision and device.is_supervised is None:
        raise CommandRefused(
            f"{kind.request_type} needs a supervised device; this device has not reported whether it is"
            " supervised yet (ask it for DeviceInformation)",
            field="device",
        )
    if kind.requires_supervision and not device.is_supervised:
        raise CommandRefused(f"{kind.request_type} needs a supervised device", field="device")


def pending_command_of_type(session: Session, device: Device, request_type: str) -> Command | None:
    return session.scalars(
        select(Command)
        .where(
            Command.device_id == device.id,
            Command.request_type == request_type,
            Command.status.in_(CommandStatus.PENDING),
        )
        .limit(1)
    ).first()


def expire_overdue(session: Session, device_id: int | None = None) -> int:
    """Mark pending commands past their expiry as expired; returns how many."""
    now = clock.now()
    stmt = (
        update(Command)
        .where(
            Command.status.in_(CommandStatus.PENDING),
            Command.expires_at.is_not(None),
            Command.expires_at < now,
        )
        # A secret the command carried (a new password) goes with it: it can never be delivered now.
        .values(status=CommandStatus.EXPIRED, expired_at=now, sealed_secret=None)
    )
    if device_id is not None:
        stmt = stmt.where(Command.device_id == device_id)
    # Session.execute is typed as returning a Result; for an UPDATE or DELETE it is a CursorResult.
    result = cast(CursorResult[Any], session.execute(stmt.execution_options(synchronize_session=False)))
    return result.rowcount or 0


def find_device_command(session: Session, device: Device, command_uuid: str) -> Command | None:
    # Scoped to the device: one device can never report results for another's commands.
    return session.scalars(
        select(Command).where(Command.device_id == device.id, Command.uuid == command_uuid)
    ).first()


def cancel_command(session: Session, command: Command, *, actor: Actor) -> Command:
    if command.status not in (CommandStatus.QUEUED, CommandStatus.NOT_NOW):
        raise CommandStateError(
            f"command {command.uuid} is {command.status}; only queued commands can be cancelled"
        )
    command.status = CommandStatus.CANCELLED
    command.cancelled_at = clock.now()
    command.sealed_secret = None  # never delivered now, so its secret is not kept
    record_event(
        session,
        actor,
        "command.cancelled",
        "command",
        command.uuid,
        {"device_id": command.device_id, "request_type": command.request_type},
    )
    return command


def pending_commands(session: Session, device: Device) -> list[Command]:
    return list(
        session.scalars(
            select(Command)
            .where(Command.device_id == device.id, Command.status.in_(CommandStatus.PENDING))
            .order_by(Command.priority.desc(), Command.id)
        )
    )
