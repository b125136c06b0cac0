"""Lock and erase: the loss-and-theft commands. They jump the queue."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from commands.command_type import CommandType, Priority, register


class DeviceLockParams(Schema):
    Message = fields.String(validate=validate.Length(max=500))
    PhoneNumber = fields.String(validate=validate.Regexp(r"^[0-9+\-() ]{1,32}$"))


class EraseDeviceParams(Schema):
    # Only keys of Apple's device.erase.yaml: RevokeVPPLicenses is not an EraseDevice key and is
    # refused as an unknown field.
    PreserveDataPlan = fields.Boolean()
    DisallowProximitySetup = fields.Boolean()


register(
    CommandType(
        "DeviceLock",
        DeviceLockParams,
        "画面ロック",
        "Lock the device",
        priority=Priority.URGENT,
        # The hotline's lock for unsupervised tablets: it must still be waiting when a tablet
        # that was offline for weeks comes back (DESIGN.md invariant 2).
        expires_after=None,
    )
)
register(
    CommandType(
        "EraseDevice",
        EraseDeviceParams,
        "データ消去(ワイプ)",
        "Erase all content and settings",
        priority=Priority.ERASE,
        # A wipe of a lost tablet must reach it whenever it comes back online.
        expires_after=None,
        two_person=True,
    )
)
