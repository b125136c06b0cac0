"""ActivationLockBypassCode: ask a supervised device for its Activation Lock bypass code and
escrow it, sealed (mdm.services.activation_lock.escrow).

Apple's device.activationlock.bypasscode.yaml: supervised only, iOS 7.1+, and the device keeps the
code only for 15 days after supervision, so Hikeshi asks as soon as a device reports that it is
supervised (commands.activation_lock). The answer's code is a secret: the stored raw result loses
it (mdm.ground.redaction: "…BypassCode" names a passcode) and the audit event never carries it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from commands.command_type import CommandType, NoParams
from mdm.ground.audit import Actor
from mdm.services.activation_lock.answers import UnreadableCode, bypass_code_of
from mdm.services.activation_lock.escrow import escrow_bypass_code, note_no_bypass_code

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command

log = logging.getLogger(__name__)


def _device_actor(command: Command) -> Actor:
    return Actor(f"device:{command.device.udid}", "device")


class ActivationLockBypassCode(CommandType):
    request_type = "ActivationLockBypassCode"
    schema = NoParams
    description_ja = "アクティベーションロックのバイパスコードの預かり"
    description_en = "Escrow the Activation Lock bypass code"
    requires_supervision = True
    # One waiting per device is enough: every answer says the same thing.
    coalesce = True

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        if report.get("Status") != "Acknowledged":
            return  # an Error is kept on the command; the next DeviceInformation asks again
        actor = _device_actor(command)
        try:
            code = bypass_code_of(report)
        except UnreadableCode as exc:
            note_no_bypass_code(
                session, command.device, command_uuid=command.uuid, reason=f"unreadable: {exc}", actor=actor
            )
            return
        if code is None:
            note_no_bypass_code(
                session, command.device, command_uuid=command.uuid, reason="none given", actor=actor
            )
            return
        if context.settings is None:
            # Never stored in clear: without the instance secret there is nothing to seal with.
            log.warning("command %s: no settings to seal the bypass code with; not escrowed", command.uuid)
            note_no_bypass_code(
                session, command.device, command_uuid=command.uuid, reason="no instance secret", actor=actor
            )
            return
        escrow_bypass_code(
            session,
            command.device,
            code,
            secret_key=context.settings.secret_key,
            command_uuid=command.uuid,
            actor=actor,
        )
