"""ShutDownDevice: power the tablet off."""

from __future__ import annotations

from commands.command_type import CommandType, NoParams, Priority


class ShutDownDevice(CommandType):
    request_type = "ShutDownDevice"
    schema = NoParams
    description_ja = "電源を切る"
    description_en = "Shut down the device"
    priority = Priority.NORMAL
    requires_supervision = True
