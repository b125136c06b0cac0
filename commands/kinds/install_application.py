"""InstallApplication: an App Store app by iTunesStoreID (device-based license, PurchaseMethod 1),
or an in-house app by the ManifestURL Hikeshi serves (its SHA-256 is in the manifest).

Sent again to a device that already manages the app, it updates the app and its Configuration:
that is how a new store version and a changed unit configuration reach the tablets. The device's
answer only says it took the request (State: Queued, Installing...) or refused it
(RejectionReason); whether the app got installed is what ManagedApplicationList says next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from commands.kinds.app_state_command import AppStateCommand
from mdm.ground.models import CommandStatus

if TYPE_CHECKING:
    from mdm.ground.models import Command, DeviceAppState

# ManagementFlags: 1 removes the app when the MDM profile is removed (unenroll); 4 prevents its
# data from being backed up; 5 both.
REMOVE_ON_UNENROLL = 1
_STATES = (
    "Queued NeedsRedemption Redeeming Prompting PromptingForLogin ValidatingPurchase Installing Managed "
    "ManagedButUninstalled UserInstalledApp UserRejected PromptingForUpdate PromptingForUpdateLogin "
    "ValidatingUpdate Updating UpdateRejected PromptingForManagement ManagementRejected Failed Unknown"
).split()


class _Options(Schema):
    PurchaseMethod = fields.Integer(strict=True, validate=validate.OneOf([0, 1]))


class _Attributes(Schema):
    Removable = fields.Boolean(truthy={True}, falsy={False})


class InstallApplicationParams(Schema):
    iTunesStoreID = fields.Integer(strict=True, validate=validate.Range(min=1, max=2**53))
    Identifier = fields.String(validate=validate.Length(min=1, max=255))
    ManifestURL = fields.Url(schemes={"https", "http"}, require_tld=False, validate=validate.Length(max=2048))
    Options = fields.Nested(_Options)
    ManagementFlags = fields.Integer(strict=True, validate=validate.OneOf([1, 4, 5]))
    Configuration = fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=255)))
    Attributes = fields.Nested(_Attributes)
    ChangeManagementState = fields.String(validate=validate.Equal("Managed"))

    @validates_schema
    def _one_source(self, data: dict[str, Any], **kwargs: Any) -> None:
        given = [k for k in ("iTunesStoreID", "Identifier", "ManifestURL") if k in data]
        if len(given) != 1:
            raise ValidationError(
                "give exactly one of iTunesStoreID, Identifier, ManifestURL", "iTunesStoreID"
            )


def error_text(report: dict[str, Any]) -> str:
    parts = []
    chain = report.get("ErrorChain")
    for item in chain if isinstance(chain, list) else []:
        if isinstance(item, dict):
            text = item.get("USEnglishDescription") or item.get("LocalizedDescription")
            parts.append(f"{item.get('ErrorDomain', '?')} {item.get('ErrorCode')}: {text}")
    return ("; ".join(parts) or "the device answered Error")[:255]


class InstallApplication(AppStateCommand):
    request_type = "InstallApplication"
    schema = InstallApplicationParams
    description_ja = "アプリのインストール (App Store / 社内アプリ)"
    description_en = "Install an app (App Store or in-house)"

    def settle(self, state: DeviceAppState, command: Command, report: dict[str, Any]) -> None:
        if command.status != CommandStatus.ACKNOWLEDGED:
            state.reason = f"install refused by the device: {error_text(report)}"
            return
        rejection = report.get("RejectionReason")
        answered = report.get("State")
        if isinstance(rejection, str):
            state.reason = f"install rejected by the device: {rejection[:64]}"
        elif isinstance(answered, str) and answered in _STATES:
            # Taken, not done: ManagedApplicationList says when it is installed.
            state.managed_status = answered
            state.reason = None
