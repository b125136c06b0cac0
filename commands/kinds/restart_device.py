"""RestartDevice: restart the tablet."""

from __future__ import annotations

from marshmallow import Schema, fields

from commands.command_type import CommandType, PlatformEquivalent, Priority


class RestartDeviceParams(Schema):
    NotifyUser = fields.Boolean()


class RestartDevice(CommandType):
    request_type = "RestartDevice"
    schema = RestartDeviceParams
    description_ja = "再起動"
    description_en = "Restart the device"
    priority = Priority.NORMAL
    requires_supervision = True
    android = PlatformEquivalent("REBOOT")
