"""ClearAppData: the Android agent clears the data of named apps (CLEAR_APP_DATA).

Android only: DevicePolicyManager.clearApplicationUserData (API 28), one call per package, for a
stuck dispatch app or a shared tablet handed to the next shift.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from commands.command_type import CommandType, PlatformEquivalent, Priority

# A Java package name as Android accepts it (two or more dot-separated segments).
PACKAGE_NAME = r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$"
MAX_PACKAGES = 50


class ClearAppDataParams(Schema):
    packages = fields.List(
        fields.String(validate=[validate.Length(max=255), validate.Regexp(PACKAGE_NAME)]),
        required=True,
        validate=validate.Length(min=1, max=MAX_PACKAGES),
    )


class ClearAppData(CommandType):
    request_type = "ClearAppData"
    schema = ClearAppDataParams
    description_ja = "アプリのデータ消去(Android)"
    description_en = "Clear app data (Android)"
    priority = Priority.NORMAL
    apple = False
    android = PlatformEquivalent("CLEAR_APP_DATA", lambda params: {"packages": list(params["packages"])})
