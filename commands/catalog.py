"""The command catalog: every command Hikeshi can send, in one registry.

Adding a command is a one-place change: define its parameter schema and register a CommandType
in one of the `commands.kinds` modules. The queue, the API and the CLI read everything else
(validation, priority, expiry, supervision requirement) from here.
"""

from __future__ import annotations

from commands.command_type import (
    _CATALOG,
    _EQUIVALENTS,
    CONFIGURED_EXPIRY,
    CommandParamsError,
    CommandType,
    DeliveryContext,
    PlatformEquivalent,
    Priority,
    UnknownCommand,
)

__all__ = [
    "CONFIGURED_EXPIRY",
    "CommandParamsError",
    "CommandType",
    "DeliveryContext",
    "PlatformEquivalent",
    "Priority",
    "UnknownCommand",
    "all_command_types",
    "equivalent_for",
    "get_command_type",
]


def get_command_type(request_type: str) -> CommandType:
    _load_kinds()
    try:
        return _CATALOG[request_type]
    except KeyError:
        raise UnknownCommand(request_type) from None


def all_command_types() -> list[CommandType]:
    _load_kinds()
    return sorted(_CATALOG.values(), key=lambda c: c.request_type)


def equivalent_for(request_type: str, platform: str) -> PlatformEquivalent | None:
    _load_kinds()
    return _EQUIVALENTS.get((request_type, platform))


def _load_kinds() -> None:
    # Imported on first use, not at module import, so kinds can import this module freely.
    from commands import kinds  # noqa: F401
