"""InstallEnterpriseApplication: an in-house app by manifest, for macOS only.

Apple's schema marks it not available on iOS (application.install.enterprise.yaml): iPads and
iPhones get in-house apps through InstallApplication with a ManifestURL. It is in the catalog for
Macs and refused, before anything is queued, for every other Apple device."""

from __future__ import annotations

from typing import TYPE_CHECKING

from marshmallow import Schema, fields, validate

from commands.command_type import CommandType, Priority

if TYPE_CHECKING:
    from mdm.ground.models import Device


class InstallEnterpriseApplicationParams(Schema):
    ManifestURL = fields.Url(
        required=True, schemes={"https"}, require_tld=False, validate=validate.Length(max=2048)
    )
    ManagementFlags = fields.Integer(strict=True, validate=validate.OneOf([1]))
    Configuration = fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=255)))
    InstallAsManaged = fields.Boolean(truthy={True}, falsy={False})


def is_mac(device: Device) -> bool:
    text = " ".join(filter(None, (device.model_name, device.model, device.product_name)))
    return "mac" in text.lower()


class InstallEnterpriseApplication(CommandType):
    request_type = "InstallEnterpriseApplication"
    schema = InstallEnterpriseApplicationParams
    description_ja = "社内アプリのインストール (macOS)"
    description_en = "Install an in-house app (macOS)"
    priority = Priority.HIGH

    def refuse_for(self, device: Device) -> tuple[str, str] | None:
        if is_mac(device):
            return None
        return (
            "InstallEnterpriseApplication は macOS 専用です。"
            "iPad には ManifestURL 付きの InstallApplication を使います",
            "InstallEnterpriseApplication is for macOS only; an iPad gets in-house apps by "
            "InstallApplication with a ManifestURL",
        )
