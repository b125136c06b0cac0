"""Settings with the MDMOptions item: whether a supervised device may register itself with
Activation Lock when its user turns on Find My (ActivationLockAllowedWhileSupervised).

Apple's schema has no Activation Lock restriction in the Restrictions payload: this option of the
Settings command (settings.yaml, MDMOptions; default false, ignored by unsupervised devices) is
the switch, and DeviceInformation's MDMOptions query reads it back. Only the MDMOptions item is
accepted here; the per-unit setting (mdm.services.activation_lock.unit_setting) queues it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from marshmallow import Schema, fields, validate

from commands.command_type import CommandType
from mdm.services.activation_lock.answers import settings_acknowledged
from mdm.services.activation_lock.escrow import note_allowed_acknowledged

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command

MDM_OPTIONS = "MDMOptions"


class _MDMOptions(Schema):
    ActivationLockAllowedWhileSupervised = fields.Boolean(required=True, truthy={True}, falsy={False})


class _MDMOptionsItem(Schema):
    Item = fields.String(required=True, validate=validate.Equal(MDM_OPTIONS))
    MDMOptions = fields.Nested(_MDMOptions, required=True)


class MDMOptionsParams(Schema):
    Settings = fields.List(fields.Nested(_MDMOptionsItem), required=True, validate=validate.Length(equal=1))


def mdm_options_params(allowed: bool) -> dict[str, Any]:
    return {
        "Settings": [{"Item": MDM_OPTIONS, "MDMOptions": {"ActivationLockAllowedWhileSupervised": allowed}}]
    }


def allowed_in_params(params: dict[str, Any] | None) -> bool | None:
    try:
        value = (params or {})["Settings"][0]["MDMOptions"]["ActivationLockAllowedWhileSupervised"]
    except (KeyError, IndexError, TypeError):
        return None
    return value if isinstance(value, bool) else None


class MDMOptionsSettings(CommandType):
    request_type = "Settings"
    schema = MDMOptionsParams
    description_ja = "アクティベーションロックの許可設定 (MDMOptions)"
    description_en = "Allow or disallow Activation Lock (MDMOptions)"
    requires_supervision = True

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        allowed = allowed_in_params(command.params)
        if allowed is not None and settings_acknowledged(report):
            note_allowed_acknowledged(session, command.device, allowed)
