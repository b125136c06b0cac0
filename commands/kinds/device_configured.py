"""DeviceConfigured: let an ADE device leave the Remote Management pane of Setup Assistant.

Sent once the unit's profiles were answered (mdm.services.ade.enrollment), to a device whose
TokenUpdate said AwaitingConfiguration; only then does Setup Assistant go on to the home screen.
"""

from __future__ import annotations

from commands.command_type import CommandType, NoParams, Priority


class DeviceConfigured(CommandType):
    request_type = "DeviceConfigured"
    schema = NoParams
    description_ja = "初期設定の完了（自動デバイス登録）"
    description_en = "Finish Setup Assistant (Automated Device Enrollment)"
    # After the installs it waits for, before inventory: the crew is looking at Setup Assistant.
    priority = Priority.HIGH
