"""PlayLostModeSound: a tablet in lost mode sounds, to be found nearby."""

from __future__ import annotations

from commands.command_type import CommandType, NoParams, Priority, Sender


class PlayLostModeSound(CommandType):
    request_type = "PlayLostModeSound"
    schema = NoParams
    description_ja = "紛失モードの警告音を鳴らす"
    description_en = "Play the lost-mode sound"
    priority = Priority.HIGH
    expires_after = None  # a lost-mode command: waits for the lost tablet like lost mode itself
    sent_by = Sender.HOTLINE
    requires_supervision = True
