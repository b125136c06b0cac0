"""ClearPasscode: clear the passcode with the UnlockToken the device gave at enrollment."""

from __future__ import annotations

from typing import Any

from commands.command_type import CommandType, DeliveryContext, NoParams, Priority
from mdm.ground.models import Device
from mdm.ground.secretbox import unseal

UNLOCK_TOKEN_PURPOSE = "unlock-token"  # noqa: S105  (a secretbox purpose label, not a secret)

NO_UNLOCK_TOKEN = (
    "この端末からはUnlockToken(パスコード解除に必要な鍵)が届いていないため、パスコードを解除できません。"
    "端末を回収して手元で解除するか、必要なら消去(ワイプ)を申請してください。",
    "The passcode cannot be cleared: this device never sent an UnlockToken (the key Apple requires to"
    " clear it). Recover the tablet and reset it in hand, or request a wipe if needed.",
)


class ClearPasscode(CommandType):
    request_type = "ClearPasscode"
    schema = NoParams
    description_ja = "パスコードの解除"
    description_en = "Clear the passcode"
    priority = Priority.HIGH
    # No Android equivalent: clearing (an empty password) fails under any password policy; the
    # agent sets a new password instead (commands.kinds.reset_password).

    def refuse_for(self, device: Device) -> tuple[str, str] | None:
        # Apple's passcode.clear.yaml marks UnlockToken required: without it the device answers an
        # error, so the command is refused before it is queued, with a reason the operator can use.
        return NO_UNLOCK_TOKEN if device.unlock_token_encrypted is None else None

    def at_delivery(self, keys: dict[str, Any], delivery: DeliveryContext) -> dict[str, Any]:
        # Unsealed only here, at delivery: the token never sits in commands.params or the audit log.
        sealed = delivery.device.unlock_token_encrypted
        if sealed is None:
            # Queued before the token was lost (refused at queue time otherwise): the device answers
            # an Error that is recorded on the command.
            return keys
        return {**keys, "UnlockToken": unseal(delivery.secret_key, UNLOCK_TOKEN_PURPOSE, sealed)}
