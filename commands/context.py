"""What commands need beyond the Session: settings and the services above the queue.

A command's result may need the settings (EraseDevice signs its wipe certificate at the
acknowledgement, with the instance's signing key) and services that themselves queue commands
and so sit above this package: profile enforcement after a ProfileList, the per-device rendering
of an InstallProfile (profiles/). Commands cannot import them; the composition root builds one
CommandContext from the settings (mdm.roots.commands.build_command_context) and hands it down.

Every caller passes it explicitly (`enqueue_command(..., context=...)`, `record_result(...,
context=...)`, `DeliveryContext(..., context=...)`): the doors take the application's from the
wiring (mdm.roots.wiring.Wiring.commands), the CLI and the scheduler from theirs, and a hook gets
it bound when the wiring connects it. Nothing reaches a command through the Session.
tests/core/test_command_context.py checks that no product caller leaves it to the default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from mdm.ground.config import Settings

if TYPE_CHECKING:
    from mdm.ground.models import Device

# fn(apple_keys, {"profile_id", "version"}, delivery) -> apple_keys made for this device.
InstallForDevice = Callable[[dict[str, Any], dict[str, Any], "DeliveryContext"], dict[str, Any]]
# fn(session, device, ProfileList items, context): compare with the desired set, queue what
# restores it (with this context).
ProfileListAnswered = Callable[[Session, "Device", list[Any], "CommandContext"], object]
# fn(session, device) -> the passwordPolicies of the device's Android policy (AMAPI shape).
AndroidPasswordPolicies = Callable[[Session, "Device"], list[dict[str, Any]]]

# The default of HIKESHI_COMMAND_EXPIRY_DAYS, for a context built without settings (tests).
FALLBACK_EXPIRY = timedelta(days=Settings.command_expiry_days)


@dataclass(frozen=True)
class ProfileDuties:
    """What profiles/ does for its commands (profiles.assignment queues through commands)."""

    install_for_device: InstallForDevice
    profile_list_answered: ProfileListAnswered
    # What an Android RESET_PASSWORD's new password is checked against before it is queued.
    android_password_policies: AndroidPasswordPolicies | None = None


@dataclass(frozen=True)
class CommandContext:
    # None: wipe certificates are left for the next holder of the settings to sign (scheduler,
    # export); command lifetimes use HIKESHI_COMMAND_EXPIRY_DAYS's default.
    settings: Settings | None = None
    profiles: ProfileDuties | None = None

    @property
    def command_expiry(self) -> timedelta:
        if self.settings is None:
            return FALLBACK_EXPIRY
        return timedelta(days=self.settings.command_expiry_days)


NO_CONTEXT = CommandContext()


@dataclass(frozen=True)
class DeliveryContext:
    """What a command may need at the moment it is handed to its device, and only then."""

    device: Device
    secret_key: str
    context: CommandContext = NO_CONTEXT
