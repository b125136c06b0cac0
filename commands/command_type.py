"""What a command is: one class per command (commands/kinds/<command>.py) says everything about it.

Its parameter schema, its Apple rendering, its Android equivalent, who may send it, how urgent it
is, how long it waits, and what its result does. The catalog (commands.catalog) is the explicit
list of these classes; nothing registers itself at import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from marshmallow import Schema, ValidationError

from commands.context import CommandContext, DeliveryContext

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from mdm.ground.models import Command, Device


class Priority:
    """Higher runs first. Lock and lost mode jump every queue (DESIGN.md invariant 2)."""

    URGENT = 100  # lock, lost mode
    ERASE = 90
    HIGH = 50  # profile installs that restore policy
    NORMAL = 0
    LOW = -10  # inventory refreshes


class Sender(StrEnum):
    """Who may send a command. web.rbac turns each into the permission a role needs."""

    HOTLINE = "hotline"  # loss and theft: the 24-hour hotline operator may send it
    FLEET = "fleet"  # fleet administration: administrators (and API tokens with that right)
    # Never queued directly, by anyone: only the hotline's two-person wipe (requester and a
    # different approver) or a recorded break glass queues it (DESIGN.md invariant 2).
    TWO_PERSON = "two_person"


class _ConfiguredExpiry:
    """The catalog's default lifetime: HIKESHI_COMMAND_EXPIRY_DAYS (the CommandContext's
    command_expiry), read when the command is queued."""

    def __repr__(self) -> str:
        return "CONFIGURED_EXPIRY"


CONFIGURED_EXPIRY = _ConfiguredExpiry()


class UnknownCommand(LookupError):
    def __init__(self, request_type: str) -> None:
        super().__init__(f"unknown command type {request_type!r}")
        self.request_type = request_type


class NoParams(Schema):
    """A command without parameters; anything given is an error naming the key."""


class UndeliverableCommand(ValueError):
    """A queued command that cannot be rendered for its device now (its platform has no such
    command, or what it refers to is gone): commands.delivery ends it in error and takes the next."""


class CommandParamsError(ValueError):
    """Parameters failed the command's schema; `fields` maps each bad field to its messages."""

    def __init__(self, request_type: str, fields: Mapping[str, Any]) -> None:
        names = ", ".join(sorted(fields))
        super().__init__(f"invalid parameters for {request_type}: {names}")
        self.request_type = request_type
        self.fields = dict(fields)


@dataclass(frozen=True)
class PlatformEquivalent:
    """The same command on another platform's agent.

    Services speak Apple's request types (the hotline queues DeviceLock, EraseDevice...). A command
    whose Android agent has an equivalent declares it: the command then accepts Android devices,
    keeps its Apple name on the queue (so its result still does what it does), and the agent
    receives it under `request_type` with `params(apple_params)`, checked against the agent's
    schema (commands.kinds.android.ANDROID_COMMANDS)."""

    request_type: str  # the agent's own command name (e.g. "LOCK")
    params: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda params: {})
    # The parameter the command's sealed secret (Command.sealed_secret) is delivered as, if any.
    secret_param: str | None = None


# mdm.ground.secretbox purpose of Command.sealed_secret.
COMMAND_SECRET_PURPOSE = "command-secret"  # noqa: S105  (a purpose label, not a secret)


class CommandType:
    """One command. Subclass it in commands/kinds/<command>.py and add the class to the catalog."""

    request_type: ClassVar[str]
    schema: ClassVar[type[Schema]]
    description_ja: ClassVar[str]
    description_en: ClassVar[str]
    priority: ClassVar[int] = Priority.NORMAL
    # None: never expires (lock, lost mode and wipe must stay queued until the device comes back);
    # CONFIGURED_EXPIRY: HIKESHI_COMMAND_EXPIRY_DAYS.
    expires_after: ClassVar[timedelta | _ConfiguredExpiry | None] = CONFIGURED_EXPIRY
    sent_by: ClassVar[Sender] = Sender.FLEET
    requires_supervision: ClassVar[bool] = False
    # Inventory-style commands: never queue a second one while one is still pending.
    coalesce: ClassVar[bool] = False
    # The Android agent's equivalent, or None for an Apple-only command.
    android: ClassVar[PlatformEquivalent | None] = None
    # False for a command only the Android agent has (its request type is then Hikeshi's own).
    apple: ClassVar[bool] = True
    # A lock-screen command: the console's message and callback-number fields fill it.
    shows_lock_screen: ClassVar[bool] = False

    def __repr__(self) -> str:
        return f"<command {self.request_type}>"

    @property
    def platforms(self) -> tuple[str, ...]:
        return tuple(
            name for name, has in (("apple", self.apple), ("android", self.android is not None)) if has
        )

    @property
    def two_person(self) -> bool:
        return self.sent_by is Sender.TWO_PERSON

    @property
    def never_expires(self) -> bool:
        return self.expires_after is None

    def lifetime(self, configured: timedelta) -> timedelta | None:
        """How long this command waits when `configured` is HIKESHI_COMMAND_EXPIRY_DAYS."""
        if self.expires_after is None:
            return None
        if isinstance(self.expires_after, _ConfiguredExpiry):
            return configured
        return self.expires_after

    def validate(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        try:
            return dict(self.schema().load(dict(params or {})))
        except ValidationError as exc:
            messages = exc.messages if isinstance(exc.messages, dict) else {"params": exc.messages}
            raise CommandParamsError(self.request_type, messages) from exc

    def lock_screen_params(self, message: str | None, phone_number: str | None) -> dict[str, Any]:
        """The parameters for a lock-screen text, in this command's keys (Apple's)."""
        params: dict[str, Any] = {}
        if message:
            params["Message"] = message
        if phone_number:
            params["PhoneNumber"] = phone_number
        return params

    # -- Apple rendering -----------------------------------------------------------------------

    def to_apple(self, params: dict[str, Any]) -> dict[str, Any]:
        """The validated parameters as keys of the Apple "Command" dictionary."""
        return dict(params)

    def at_delivery(self, keys: dict[str, Any], delivery: DeliveryContext) -> dict[str, Any]:
        """Keys added when the device fetches the command (ClearPasscode's UnlockToken): a secret
        added here is never stored in commands.params nor written to the audit log."""
        return keys

    def apple_command(self, params: dict[str, Any], delivery: DeliveryContext) -> dict[str, Any]:
        """The keys of the Apple "Command" dictionary, as sent to `delivery.device` now."""
        return self.at_delivery(self.to_apple(params), delivery)

    # -- queueing and results --------------------------------------------------------------------

    def seal_secret(
        self, session: Session, device: Device, params: dict[str, Any], context: CommandContext
    ) -> tuple[dict[str, Any], bytes | None]:
        """Checks that need the device (its unit's policy), and the secret the command carries
        taken out of the validated parameters and sealed (stored as Command.sealed_secret, never in
        params). Raises CommandParamsError naming the field. Default: nothing to take."""
        return params, None

    def refuse_for(self, device: Device) -> tuple[str, str] | None:
        """A reason (Japanese, English) this Apple device cannot run the command, checked before
        anything is queued; None when it can."""
        return None

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        """What the device's answer (Acknowledged or Error) does, in the same transaction."""
