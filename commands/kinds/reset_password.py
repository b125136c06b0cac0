"""ResetPassword: the Android agent sets a new screen-lock password (RESET_PASSWORD).

Android only. The device owner calls resetPasswordWithToken, which refuses a password the
unit's policy does not allow, so the password is checked against the device's policy before it
is queued (commands.kinds.android_password) and refused with a 400 naming `password`. It is
sealed at once (Command.sealed_secret), added to the command only when the agent fetches it,
and dropped when the agent answers: no command list, API answer, audit event or log line ever
holds it. Apple's ClearPasscode (clear with the UnlockToken) has no Android equivalent: an
empty password fails under any password policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from marshmallow import Schema, fields, validate

from commands.command_type import (
    COMMAND_SECRET_PURPOSE,
    CommandParamsError,
    CommandType,
    PlatformEquivalent,
    Priority,
)
from commands.kinds.android import RESET_PASSWORD_FLAGS
from commands.kinds.android_password import MAX_PASSWORD_LENGTH, password_problem
from mdm.ground.secretbox import seal

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from commands.context import CommandContext
    from mdm.ground.models import Command, Device


class ResetPasswordParams(Schema):
    # Empty or left out: clear the password (allowed only where the unit's policy wants none).
    password = fields.String(load_default="", validate=validate.Length(max=MAX_PASSWORD_LENGTH))
    flags = fields.List(
        fields.String(validate=validate.OneOf(RESET_PASSWORD_FLAGS)),
        load_default=list,
        validate=validate.Length(max=len(RESET_PASSWORD_FLAGS)),
    )


class ResetPassword(CommandType):
    request_type = "ResetPassword"
    schema = ResetPasswordParams
    description_ja = "画面ロックのパスワード再設定(Android)"
    description_en = "Set a new screen-lock password (Android)"
    priority = Priority.HIGH
    apple = False
    android = PlatformEquivalent(
        "RESET_PASSWORD",
        lambda params: {"flags": list(params.get("flags") or [])},
        secret_param="password",  # noqa: S106  (the parameter's name, not a password)
    )

    def seal_secret(
        self, session: Session, device: Device, params: dict[str, Any], context: CommandContext
    ) -> tuple[dict[str, Any], bytes | None]:
        rest = {key: value for key, value in params.items() if key != "password"}
        password = str(params.get("password") or "")
        duty = context.profiles.android_password_policies if context.profiles else None
        if duty is None or context.settings is None:
            # Without the policy the password cannot be checked, without the secret not sealed.
            raise CommandParamsError(self.request_type, {"password": ["cannot be checked here"]})
        problem = password_problem(password, duty(session, device))
        if problem is not None:
            raise CommandParamsError(self.request_type, {"password": [problem]})
        if not password:
            return rest, None
        return rest, seal(context.settings.secret_key, COMMAND_SECRET_PURPOSE, password.encode("utf-8"))

    def on_result(
        self, session: Session, command: Command, report: dict[str, Any], context: CommandContext
    ) -> None:
        # Answered: the password is the user's now; the server keeps no copy, not even sealed.
        command.sealed_secret = None
