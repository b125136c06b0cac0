"""What the lock of a lost tablet really achieved, read from the device's answer.

A DeviceLock acknowledgement only says the command ran. Its MessageResult (Apple's
device.lock.yaml) says whether the lock-screen message was shown: `NoPasscodeSet` means it was not,
and a tablet without a passcode opens for anyone, so that lock must never be shown as "locked".
EnableLostMode has no MessageResult: once acknowledged, the lost-mode screen shows the message.
Each state carries what the operator should do next, Japanese first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mdm.ground.models import Command, CommandStatus, Device

LOCK_REQUEST_TYPES = ("DeviceLock", "EnableLostMode")


class LockState:
    NOT_SENT = "not_sent"
    SENT = "sent"  # queued or delivered, no answer yet
    DISPLAYED = "displayed"  # DeviceLock acknowledged, MessageResult Success
    LOST_MODE_ON = "lost_mode_on"  # EnableLostMode acknowledged
    IN_LOST_MODE = "in_lost_mode"  # DeviceLock acknowledged, MessageResult DeviceInLostMode
    NOT_DISPLAYED_NO_PASSCODE = "not_displayed_no_passcode"  # MessageResult NoPasscodeSet
    DISPLAY_UNKNOWN = "display_unknown"  # MessageResult Unknown (an error on the device)
    DISPLAY_NOT_REPORTED = "display_not_reported"  # acknowledged without a MessageResult
    FAILED = "failed"  # the device answered Error
    WITHDRAWN = "withdrawn"  # cancelled or expired before the device answered

    # The device holds the lock (the incident may be marked locked).
    HELD = (DISPLAYED, LOST_MODE_ON, IN_LOST_MODE, DISPLAY_NOT_REPORTED)


# code: (label ja, label en, next step ja, next step en)
TEXTS: dict[str, tuple[str, str, str, str]] = {
    LockState.NOT_SENT: (
        "未送信",
        "Not sent",
        "「今すぐロック」を押してください。",
        "Press Lock now.",
    ),
    LockState.SENT: (
        "送信済み(端末の応答待ち)",
        "Sent, not yet acknowledged",
        "端末が次に接続したときに実行されます。電源断・圏外の可能性があります。このまま待つか、消去(ワイプ)の申請を検討してください。",
        "The tablet runs it when it next connects; it may be off or out of coverage. Wait, or consider"
        " requesting a wipe.",
    ),
    LockState.DISPLAYED: (
        "端末が応答し、メッセージを表示",
        "Acknowledged and displayed",
        "ロック画面にメッセージと連絡先が表示されています。拾得者からの連絡を待ち、必要なら消去(ワイプ)を申請してください。",
        "The lock screen shows the message and phone number. Wait for a finder's call; request a wipe if"
        " needed.",
    ),
    LockState.LOST_MODE_ON: (
        "端末が応答し、紛失モードでメッセージを表示",
        "Acknowledged and displayed (lost mode)",
        "紛失モードの画面にメッセージが表示されています。位置情報の取得や警告音を使えます。",
        "The lost-mode screen shows the message. Locate the tablet or play the sound.",
    ),
    LockState.IN_LOST_MODE: (
        "端末が応答(紛失モード中のため紛失モードの画面を表示)",
        "Acknowledged; the device is in lost mode and shows its lost-mode screen",
        "紛失モードが有効です。位置情報の取得を試してください。",
        "Lost mode is on. Try locating the tablet.",
    ),
    LockState.NOT_DISPLAYED_NO_PASSCODE: (
        "端末は応答したがメッセージは未表示(パスコード未設定)",
        "Acknowledged but not displayed (no passcode)",
        "パスコードが設定されていないため、ロックは効かず、メッセージも表示されていません。誰でも端末を開けます。"
        "直ちに消去(ワイプ)を申請してください(監視対象の端末なら紛失モードも使えます)。",
        "No passcode is set: the lock does not hold and the message was not shown, so anyone can open the"
        " tablet. Request a wipe now (a supervised tablet can also be put in lost mode).",
    ),
    LockState.DISPLAY_UNKNOWN: (
        "端末は応答したが表示は不明(端末側の不明なエラー)",
        "Acknowledged, display unknown (the device reported an unknown error)",
        "メッセージが表示されたか分かりません。もう一度ロックを送るか、消去(ワイプ)を申請してください。",
        "Whether the message was shown is unknown. Lock again, or request a wipe.",
    ),
    LockState.DISPLAY_NOT_REPORTED: (
        "端末が応答(表示結果の報告なし)",
        "Acknowledged; the device did not report whether the message displayed",
        "画面はロックされましたが、メッセージの表示は報告されていません。端末情報でパスコードの有無を確認してください。",
        "The screen was locked, but the device did not report whether the message was shown. Check the"
        " device's passcode state.",
    ),
    LockState.FAILED: (
        "失敗(端末がエラーを返答)",
        "Failed: the device answered with an error",
        "もう一度ロックを送るか、消去(ワイプ)を申請してください。",
        "Lock again, or request a wipe.",
    ),
    LockState.WITHDRAWN: (
        "取り消し・期限切れ(端末は未実行)",
        "Withdrawn or expired before the device ran it",
        "必要ならもう一度ロックを送ってください。",
        "Lock again if still needed.",
    ),
}

_BY_MESSAGE_RESULT = {
    "Success": LockState.DISPLAYED,
    "DeviceInLostMode": LockState.IN_LOST_MODE,
    "NoPasscodeSet": LockState.NOT_DISPLAYED_NO_PASSCODE,
    "Unknown": LockState.DISPLAY_UNKNOWN,
}


@dataclass(frozen=True)
class LockView:
    state: str
    label_ja: str
    label_en: str
    next_step_ja: str
    next_step_en: str
    request_type: str | None = None
    command_uuid: str | None = None
    message_result: str | None = None
    answered_at: datetime | None = None

    @property
    def held(self) -> bool:
        return self.state in LockState.HELD

    def as_dict(self) -> dict[str, object]:
        return {
            "state": self.state,
            "label_ja": self.label_ja,
            "label_en": self.label_en,
            "next_step_ja": self.next_step_ja,
            "next_step_en": self.next_step_en,
            "request_type": self.request_type,
            "command_uuid": self.command_uuid,
            "message_result": self.message_result,
            "answered_at": self.answered_at,
        }


def state_of(command: Command) -> str:
    """The lock state one DeviceLock or EnableLostMode command reached."""
    if command.status in CommandStatus.PENDING:
        return LockState.SENT
    if command.status == CommandStatus.ERROR:
        return LockState.FAILED
    if command.status != CommandStatus.ACKNOWLEDGED:
        return LockState.WITHDRAWN
    if command.request_type == "EnableLostMode":
        return LockState.LOST_MODE_ON
    if command.message_result is None:
        return LockState.DISPLAY_NOT_REPORTED
    return _BY_MESSAGE_RESULT.get(command.message_result, LockState.DISPLAY_UNKNOWN)


def lock_view(command: Command | None) -> LockView:
    if command is None:
        return LockView(LockState.NOT_SENT, *TEXTS[LockState.NOT_SENT])
    state = state_of(command)
    return LockView(
        state,
        *TEXTS[state],
        request_type=command.request_type,
        command_uuid=command.uuid,
        message_result=command.message_result,
        answered_at=command.acknowledged_at or command.error_at,
    )


def latest_lock_command(session: Session, device: Device) -> Command | None:
    """The device's newest lock or lost-mode command, whoever queued it."""
    return session.scalars(
        select(Command)
        .where(Command.device_id == device.id, Command.request_type.in_(LOCK_REQUEST_TYPES))
        .order_by(Command.id.desc())
        .limit(1)
    ).first()


def device_lock_view(session: Session, device: Device) -> LockView | None:
    """The lock state of the device's newest lock command; None when it was never sent one."""
    command = latest_lock_command(session, device)
    return None if command is None else lock_view(command)
