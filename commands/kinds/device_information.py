"""DeviceInformation: what the device is (model, OS, serial, supervision, battery), into inventory."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from commands.kinds.inventory_query import InventoryQuery
from mdm.services.inventory.parsers.device_information import parse_device_information

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
    # ActivationLockAllowedWhileSupervised as the device has it (commands.activation_lock).
    "MDMOptions",
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


class DeviceInformation(InventoryQuery):
    request_type = "DeviceInformation"
    schema = DeviceInformationParams
    description_ja = "端末情報の取得"
    description_en = "Collect device information"
    parser = parse_device_information
