"""Power and restart commands."""

from __future__ import annotations

from marshmallow import Schema, fields

from commands.command_type import CommandType, Priority, register


class RestartDeviceParams(Schema):
    NotifyUser = fields.Boolean()


register(
    CommandType(
        "RestartDevice",
        RestartDeviceParams,
        "再起動",
        "Restart the device",
        priority=Priority.NORMAL,
        requires_supervision=True,
    )
)
