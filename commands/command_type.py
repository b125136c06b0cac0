"""What a command type is (parameters, priority, expiry, platforms) and the registry the
`commands.kinds` modules fill. Read it through `commands.catalog`, which loads the kinds first."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from marshmallow import Schema, ValidationError

if TYPE_CHECKING:
    from mdm.ground.models import Device


class Priority:
    """Higher runs first. Lock and lost mode jump every queue (DESIGN.md invariant 2)."""

    URGENT = 100  # lock, lost mode
    ERASE = 90
    HIGH = 50  # profile installs that restore policy
    NORMAL = 0
    LOW = -10  # inventory refreshes


class _ConfiguredExpiry:
    """The catalog's default lifetime: HIKESHI_COMMAND_EXPIRY_DAYS (commands.expiry), read when
    the command is queued."""

    def __repr__(self) -> str:
        return "CONFIGURED_EXPIRY"


CONFIGURED_EXPIRY = _ConfiguredExpiry()


@dataclass(frozen=True)
class DeliveryContext:
    """What a command may need at the moment it is handed to its device, and only then."""

    device: Device
    secret_key: str


class UnknownCommand(LookupError):
    def __init__(self, request_type: str) -> None:
        super().__init__(f"unknown command type {request_type!r}")
        self.request_type = request_type


class CommandParamsError(ValueError):
    """Parameters failed the command's schema; `fields` maps each bad field to its messages."""

    def __init__(self, request_type: str, fields: Mapping[str, Any]) -> None:
        names = ", ".join(sorted(fields))
        super().__init__(f"invalid parameters for {request_type}: {names}")
        self.request_type = request_type
        self.fields = dict(fields)


@dataclass(frozen=True)
class CommandType:
    request_type: str
    schema: type[Schema]
    description_ja: str
    description_en: str
    priority: int = Priority.NORMAL
    # None: never expires (lock, lost mode and wipe must stay queued until the device comes back);
    # CONFIGURED_EXPIRY: HIKESHI_COMMAND_EXPIRY_DAYS.
    expires_after: timedelta | _ConfiguredExpiry | None = CONFIGURED_EXPIRY
    platforms: tuple[str, ...] = ("apple",)
    requires_supervision: bool = False
    # Inventory-style commands: never queue a second one while one is still pending.
    coalesce: bool = False
    # Queued only by the hotline's two-person wipe flow (or a recorded break glass), never
    # directly: the queue refuses it from every door (API, console, CLI) unless that flow says so.
    two_person: bool = False
    # Turns validated parameters into the keys of the Apple "Command" dictionary.
    to_apple: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda params: dict(params))
    # Adds keys read at delivery (ClearPasscode's UnlockToken): a secret added here is never
    # stored in commands.params nor written to the audit log.
    at_delivery: Callable[[dict[str, Any], DeliveryContext], dict[str, Any]] | None = None
    # Refuses the command for a device that cannot run it, before anything is queued: returns
    # (reason in Japanese, reason in English), or None when the device can.
    refuse_for: Callable[[Device], tuple[str, str] | None] | None = None

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

    def apple_command(self, params: dict[str, Any], context: DeliveryContext) -> dict[str, Any]:
        """The keys of the Apple "Command" dictionary, as sent to `context.device` now."""
        keys = self.to_apple(params)
        return keys if self.at_delivery is None else self.at_delivery(keys, context)

    def validate(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        try:
            return dict(self.schema().load(dict(params or {})))
        except ValidationError as exc:
            messages = exc.messages if isinstance(exc.messages, dict) else {"params": exc.messages}
            raise CommandParamsError(self.request_type, messages) from exc


_CATALOG: dict[str, CommandType] = {}


def register(command_type: CommandType) -> CommandType:
    if command_type.request_type in _CATALOG:
        raise ValueError(f"{command_type.request_type} registered twice")
    _CATALOG[command_type.request_type] = command_type
    return command_type


# -- the same command on another platform ---------------------------------------------------------
# Services speak Apple's request types (the hotline queues DeviceLock, EraseDevice...). A platform
# whose agent has an equivalent command declares it here: the Apple type then accepts that
# platform's devices and keeps its name on the queue (so its result handlers still run), and the
# platform's protocol renders it under the equivalent's name when the device fetches it.


@dataclass(frozen=True)
class PlatformEquivalent:
    request_type: str  # the platform's own command name (e.g. the Android agent's "LOCK")
    params: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda params: {})


_EQUIVALENTS: dict[tuple[str, str], PlatformEquivalent] = {}


def register_equivalent(request_type: str, platform: str, equivalent: PlatformEquivalent) -> None:
    kind = _CATALOG[request_type]
    if platform not in kind.platforms:
        _CATALOG[request_type] = replace(kind, platforms=(*kind.platforms, platform))
    _EQUIVALENTS[(request_type, platform)] = equivalent
