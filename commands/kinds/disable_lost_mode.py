"""DisableLostMode: the tablet is back; leave lost mode."""

from __future__ import annotations

from commands.command_type import CommandType, NoParams, PlatformEquivalent, Priority, Sender


class DisableLostMode(CommandType):
    request_type = "DisableLostMode"
    schema = NoParams
    description_ja = "紛失モードの解除"
    description_en = "Disable lost mode"
    priority = Priority.URGENT
    expires_after = None  # a lost-mode command: waits for the lost tablet like lost mode itself
    sent_by = Sender.HOTLINE
    requires_supervision = True
    android = PlatformEquivalent("STOP_LOST_MODE")
