"""The Apple device channel as one service: a check-in message, a connect (a report and the next
command), and an answer too large to read. Each is one call from its handler in mdm/doors/apple,
after the handler has verified the request's signature and decoded its body; never commits."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BindParameter, bindparam
from sqlalchemy.orm import Session

from commands.catalog import DeliveryContext, get_command_type
from commands.context import CommandContext
from commands.delivery import deliver_next_commands, waiting_command
from commands.refused_answers import refuse_oversized_answer
from commands.results import REPORT_STATUSES, record_result
from mdm.ground.models import Command, Device, DeviceFacts
from mdm.services import devices
from mdm.services.inventory.facts import keep_facts
from mdm.services.osupdates import declarative

# Keys of the answers that merge into the device's facts (DeviceInformation, SecurityInfo).
_FACT_ANSWERS = ("QueryResponses", "SecurityInfo")
# What the identity read of a connect carries (mdm.services.devices.identify_device_with), one
# constant per kind of report so its statement is built once: an Idle takes commands answered
# NotNow again; an answer skips the command it answers (bound as "answered"), and an inventory
# answer also reads the facts it merges into.
_ANSWERED: BindParameter[str] = bindparam("answered")
_IDLE: tuple[devices.Alongside, ...] = (waiting_command(Device.id, offer_not_now=True),)
_ANSWER: tuple[devices.Alongside, ...] = (waiting_command(Device.id, offer_not_now=False, skip=_ANSWERED),)
_INVENTORY_ANSWER: tuple[devices.Alongside, ...] = (
    *_ANSWER,
    (DeviceFacts, DeviceFacts.device_id == Device.id, ()),
)


class UnsupportedMessage(ValueError):
    """A MessageType or report Status this server does not handle (answered 400)."""


class DeclarationNotFound(LookupError):
    """A DeclarativeManagement check-in asked for a declaration not in the device's set (404)."""


@dataclass(frozen=True)
class CommandForDevice:
    """The command a connect hands over, as the keys of Apple's "Command" dictionary."""

    uuid: str
    request_type: str
    keys: dict[str, Any]


@dataclass(frozen=True)
class RefusedAnswer:
    """What `answer_too_large` did: the device it came from and the command it failed, if any."""

    device_id: int
    command_uuid: str | None


def checkin(
    session: Session,
    identity: devices.PresentedIdentity,
    message: dict[str, Any],
    raw: bytes,
    *,
    source_ip: str | None,
    secret_key: str,
) -> bytes | None:
    """Authenticate, TokenUpdate, CheckOut or DeclarativeManagement (whose answer, JSON, is
    returned); user channels and UserAuthenticate are declined.

    An IdentityConflict comes with nothing of the Authenticate written and its audit event and
    alert recorded (devices.record_identity_conflict), for the caller to commit.
    """
    message_type = message.get("MessageType")
    if message_type == "UserAuthenticate":
        # Hikeshi manages shared field tablets on the device channel only; the protocol lets the
        # server decline the user channel.
        raise devices.UserChannelRefused("user channel not supported")
    devices.refuse_user_channel(message)
    if message_type == "Authenticate":
        try:
            with session.begin_nested():
                devices.authenticate(session, identity, message, raw, source_ip)
        except devices.IdentityConflict as exc:
            devices.record_identity_conflict(session, exc, source_ip)
            raise
    elif message_type in ("TokenUpdate", "CheckOut"):
        udid = devices.require_string(message, "UDID", 128)
        device = devices.identify_device(session, identity, udid)
        if message_type == "TokenUpdate":
            devices.token_update(session, device, message, raw, source_ip, secret_key=secret_key)
        else:
            devices.check_out(session, device, raw, source_ip)
    elif message_type == "DeclarativeManagement":
        udid = devices.require_string(message, "UDID", 128)
        device = devices.identify_device(session, identity, udid)
        devices.touch(session, device)
        try:
            found = declarative.answer(
                session,
                device,
                message.get("Endpoint"),
                message.get("Data"),
                actor=devices.device_actor(udid, source_ip),
            )
        except declarative.DeclarativeRequestError as exc:
            raise UnsupportedMessage(str(exc)) from exc
        except declarative.DeclarationNotFound as exc:
            raise DeclarationNotFound(str(exc)) from exc
        return found.body
    else:
        raise UnsupportedMessage(f"MessageType {message_type!r} is not supported")
    return None


def connect(
    session: Session,
    identity: devices.PresentedIdentity,
    report: dict[str, Any],
    raw: bytes,
    *,
    source_ip: str | None,
    secret_key: str,
    context: CommandContext,
) -> CommandForDevice | None:
    """Record the device's report (unless Idle) and take its next command (commands.delivery)."""
    # A user channel's Idle must never be handed the device channel's queue.
    devices.refuse_user_channel(report)
    udid = devices.require_string(report, "UDID", 128)
    status = report.get("Status")
    if status not in REPORT_STATUSES:
        raise UnsupportedMessage(f"Status {status!r} is not a known report status")
    answered = report.get("CommandUUID") if status != "Idle" else None
    # The identity read carries what this request needs next: the command waiting for the device
    # (not the one it answers now) and, for an inventory answer, the facts it merges into.
    if status == "Idle":
        alongside = _IDLE
    elif status == "Acknowledged" and any(key in report for key in _FACT_ANSWERS):
        alongside = _INVENTORY_ANSWER
    else:
        alongside = _ANSWER
    # An answer takes its device row first, as the push dispatcher does before it stamps the
    # device's pending commands (one UPDATE, rows in any order): an answer settles one command
    # and then claims the next, and without the device row the two deadlocked, each holding a
    # command the other wanted. An Idle check-in claims one command (or takes the device row
    # first when it must read the queue, commands.delivery), so it locks nothing here.
    device, (waiting, *facts) = devices.identify_device_with(
        session,
        identity,
        udid,
        alongside,
        {"answered": answered if isinstance(answered, str) else ""},
        lock_device=status != "Idle",
    )
    if facts and facts[0] is not None:
        keep_facts(session, facts[0])
    devices.touch(session, device)
    actor = devices.device_actor(udid, source_ip)
    if status != "Idle":
        record_result(
            session, device, report, raw, actor=actor, identity=identity.fingerprint, context=context
        )

    def render(command: Command) -> CommandForDevice:
        keys = get_command_type(command.request_type).apple_command(
            dict(command.params), DeliveryContext(device, secret_key, context=context)
        )
        return CommandForDevice(command.uuid, command.request_type, keys)

    found = deliver_next_commands(
        session,
        device,
        render,
        limit=1,
        offer_not_now=status == "Idle",
        actor=actor,
        context=context,
        looked_ahead=waiting,
    )
    return found[0] if found else None


def answer_too_large(
    session: Session,
    identity: devices.PresentedIdentity,
    uuids: Collection[str],
    size: int,
    limit: int,
    *,
    source_ip: str | None,
) -> RefusedAnswer:
    """An answer past the size limit from an authenticated identity: the device is the one the
    certificate is bound to (the body is never parsed), and the command it names fails
    (commands.refused_answers). Raises DeviceIdentityError or IdentityRefused before any write."""
    device: Device = devices.device_for_identity(session, identity)
    actor = devices.device_actor(device.udid or "", source_ip)
    command = refuse_oversized_answer(session, device, uuids, size, limit, actor=actor)
    return RefusedAnswer(device.id, command.uuid if command is not None else None)
