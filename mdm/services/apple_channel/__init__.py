"""The Apple device service: what /mdm/checkin and /mdm/connect do, in NanoMDM's shape (check-in
messages, and one call that records a report and hands over the next command).

Each handler in mdm/doors/apple makes one call here (authenticate, decode, call, encode); nothing
here knows HTTP or plists or commits. Commands come from the queue both platforms share
(commands.delivery).
"""

from __future__ import annotations

from mdm.services.apple_channel.channel import (
    CommandForDevice,
    DeclarationNotFound,
    RefusedAnswer,
    UnsupportedMessage,
    answer_too_large,
    checkin,
    connect,
)
from mdm.services.devices import (
    CheckinMessageError,
    DeviceIdentityError,
    IdentityConflict,
    IdentityRefused,
    PresentedIdentity,
    UserChannelRefused,
)

__all__ = [
    "CheckinMessageError",
    "CommandForDevice",
    "DeclarationNotFound",
    "DeviceIdentityError",
    "IdentityConflict",
    "IdentityRefused",
    "PresentedIdentity",
    "RefusedAnswer",
    "UnsupportedMessage",
    "UserChannelRefused",
    "answer_too_large",
    "checkin",
    "connect",
]
