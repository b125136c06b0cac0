"""Inventory queries: what the device is, how it is secured, what it has installed."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from commands.command_type import CommandType, Priority, register

# The standard DeviceInformation queries a fleet manager needs. Every key must be one of the
# queries of Apple's information.device.yaml (tests/inventory/test_default_queries.py checks it):
# PasscodeLockGracePeriodEnforced, for one, is a SecurityInfo answer, not a query.
STANDARD_DEVICE_QUERIES = (
    "DeviceName",
    "OSVersion",
    "BuildVersion",
    "ModelName",
    "Model",
    "ProductName",
    "SerialNumber",
    "IMEI",
    "MEID",
    "BatteryLevel",
    "DeviceCapacity",
    "AvailableDeviceCapacity",
    "IsSupervised",
    "IsActivationLockEnabled",
    "IsDeviceLocatorServiceEnabled",
    "IsCloudBackupEnabled",
    "WiFiMAC",
    "BluetoothMAC",
    "UDID",
    "IsMDMLostModeEnabled",
    "ICCID",
    "CellularTechnology",
    "IsRoaming",
    "SoftwareUpdateDeviceID",
    "SupplementalBuildVersion",
    "TimeZone",
)


class DeviceInformationParams(Schema):
    Queries = fields.List(
        fields.String(validate=validate.Length(min=1, max=128)),
        load_default=lambda: list(STANDARD_DEVICE_QUERIES),
        validate=validate.Length(min=1, max=200),
    )


class NoParams(Schema):
    """A command without parameters; anything given is an error naming the key."""


class InstalledApplicationListParams(Schema):
    ManagedAppsOnly = fields.Boolean()
    Identifiers = fields.List(fields.String(validate=validate.Length(min=1, max=255)))


class CertificateListParams(Schema):
    ManagedOnly = fields.Boolean()


register(
    CommandType(
        "DeviceInformation",
        DeviceInformationParams,
        "端末情報の取得",
        "Collect device information",
        priority=Priority.LOW,
        coalesce=True,
    )
)
register(
    CommandType(
        "SecurityInfo",
        NoParams,
        "セキュリティ情報の取得",
        "Collect security information",
        priority=Priority.LOW,
        coalesce=True,
    )
)
register(
    CommandType(
        "InstalledApplicationList",
        InstalledApplicationListParams,
        "インストール済みアプリ一覧の取得",
        "List installed apps",
        priority=Priority.LOW,
        coalesce=True,
    )
)
register(
    CommandType(
        "ProfileList",
        NoParams,
        "構成プロファイル一覧の取得",
        "List installed profiles",
        priority=Priority.LOW,
        coalesce=True,
    )
)
register(
    CommandType(
        "CertificateList",
        CertificateListParams,
        "証明書一覧の取得",
        "List installed certificates",
        priority=Priority.LOW,
        coalesce=True,
    )
)
